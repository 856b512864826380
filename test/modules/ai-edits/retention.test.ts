/**
 * What AI edits keep, and for how long (retention.ts): processes never
 * booked go after a day; with AI_EDIT_RETENTION_DAYS, finished processes
 * with their results and uploads nothing uses go after that many days, rows,
 * blobs and cache entries alike. Time is moved by the server's injected
 * clock; the sweep is the one `kiln serve` runs hourly, run here at the
 * moment a test chooses. On SQLite, and on PostgreSQL with TEST_DATABASE_URL.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SERVICE_PRINCIPAL_ID } from '../../../src/auth/principal.js';
import type { Env } from '../../../src/config.js';
import { newId } from '../../../src/ids.js';
import * as repo from '../../../src/modules/ai-edits/repo.js';
import { aiEditSweep, SWEEP_INTERVAL_MS, UNBOOKED_PROCESS_TTL_MS } from '../../../src/modules/ai-edits/retention.js';
import { cacheKey } from '../../../src/modules/ai-edits/service.js';
import { RedisCache } from '../../../src/platform/cache/index.js';
import { TestClock } from '../../auth/helpers.js';
import { tempDataDir } from '../../helpers/config.js';
import { createTestDatabase, DATABASES, type DatabaseName } from '../../helpers/pg.js';
import type { TestServer } from '../../helpers/server.js';
import { REFUSAL, startFakeOpenAI, type FakeOpenAI } from './fake-openai.js';
import { expectFailure, post, SERVICE, startAiServer, upload, waitForEnd, type AiServerOptions, type StatusData } from './server.js';

const REDIS = process.env.TEST_REDIS_URL;
const DAYS = 7;
const HOUR_MIN = 60;
const DAY_MIN = 24 * HOUR_MIN;

let fake: FakeOpenAI;
beforeAll(async () => {
  fake = await startFakeOpenAI();
});
afterAll(async () => fake?.close());

interface Server extends TestServer {
  /** What it was started with, DATABASE_URL included: a second process over the same data starts with it. */
  env: Env;
}

/** An AI-edit Kiln on `database`; on PostgreSQL over a database of its own, which closing (or a failed start) drops. */
async function startOn(database: DatabaseName, extra: Env, options: AiServerOptions): Promise<Server> {
  const pg = database === 'PostgreSQL' ? await createTestDatabase() : null;
  const env: Env = { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseUrl, ...(pg ? { DATABASE_URL: pg.url } : {}), ...extra };
  let started: TestServer;
  try {
    started = await startAiServer(env, options);
  } catch (err) {
    await pg?.drop();
    throw err;
  }
  return {
    ...started,
    env,
    async close() {
      try {
        await started.close();
      } finally {
        await pg?.drop();
      }
    },
  };
}

const blobsOf = (server: TestServer, fileId: string): string => path.join(server.dataDir, 'blobs', 'ai-edits', fileId);
const fileIdOf = (url: string): string => url.split('/').at(-1) as string;

async function processRow(server: TestServer, initId: string) {
  return server.ctx.db.kysely.selectFrom('ai_processes').selectAll().where('init_id', '=', initId).executeTakeFirst();
}

async function fileRow(server: TestServer, fileId: string) {
  return server.ctx.db.kysely.selectFrom('ai_files').selectAll().where('file_id', '=', fileId).executeTakeFirst();
}

/** Whether the file is there: its row and its blobs on disk, both or neither (anything else fails the test). */
async function fileKept(server: TestServer, fileId: string): Promise<boolean> {
  const row = (await fileRow(server, fileId)) !== undefined;
  expect(existsSync(blobsOf(server, fileId)), `blobs of ${fileId} as its row (${row ? 'there' : 'gone'})`).toBe(row);
  return row;
}

async function uploadUrl(server: TestServer): Promise<string> {
  const res = await upload(server.url, SERVICE);
  expect(res.status).toBe(201);
  return res.body.data.url;
}

async function initiate(server: TestServer): Promise<string> {
  const res = await post<{ init_id: string }>(server.url, '/api/v1/initiate-process', SERVICE);
  expect(res.status).toBe(201);
  return res.body.data.init_id;
}

const status = (server: TestServer, initId: string) => post<StatusData>(server.url, '/api/v1/process/status', SERVICE, { init_id: initId });

/** Initiates and books a process with these uploads and waits for its end; the result's file id when it completed. */
async function edit(server: TestServer, sourceUrl: string, targetUrl: string): Promise<{ initId: string; end: StatusData; resultId?: string }> {
  const initId = await initiate(server);
  const book = await post(server.url, '/api/v1/process/book', SERVICE, { init_id: initId, source_url: sourceUrl, target_url: targetUrl, prompt: 'Put the child on the page' });
  expect(book.status, JSON.stringify(book.body)).toBe(202);
  const end = await waitForEnd(server.url, SERVICE, initId);
  return { initId, end, resultId: end.result_url ? fileIdOf(end.result_url) : undefined };
}

it('sweeps hourly and lets a process wait a day to be booked', () => {
  expect(SWEEP_INTERVAL_MS).toBe(60 * 60_000);
  expect(UNBOOKED_PROCESS_TTL_MS).toBe(24 * 60 * 60_000);
});

for (const { name, skip } of DATABASES) {
  describe.skipIf(skip)(`AI_EDIT_RETENTION_DAYS=${DAYS} (${name})`, () => {
    const clock = new TestClock();
    let server: Server;
    const sweep = () => aiEditSweep(server.ctx).run();

    beforeAll(async () => {
      server = await startOn(name, { AI_EDIT_RETENTION_DAYS: String(DAYS) }, { clock });
    });
    afterAll(async () => server?.close());

    it('deletes a process never booked 24 hours after it was made, not before; its status then answers as an unknown init_id, cached or not', async () => {
      const initId = await initiate(server);
      clock.advanceMinutes(DAY_MIN - 1);
      await sweep();
      expect((await status(server, initId)).body.data.status).toBe('initiated');

      clock.advanceMinutes(2);
      // Read just now, so cached: without the sweep's invalidation the next read would still answer from the cache.
      expect((await status(server, initId)).body.data.status).toBe('initiated');
      expect(await server.ctx.cache.get(cacheKey(initId))).toBeDefined();
      expect(await sweep()).toBeGreaterThanOrEqual(1);

      expect(await processRow(server, initId)).toBeUndefined();
      expect(await server.ctx.cache.get(cacheKey(initId))).toBeUndefined();
      const unknown = await status(server, 'no-such-process-id-000');
      const gone = await status(server, initId);
      expectFailure(gone, 404, 5001, 'process_not_found');
      expect(gone.body).toEqual(unknown.body);
    });

    it('deletes a completed or failed process AI_EDIT_RETENTION_DAYS after it finished, with its result\'s row, blobs and cache entry', async () => {
      const [source, target] = [await uploadUrl(server), await uploadUrl(server)];
      fake.script.push(REFUSAL);
      const failed = await edit(server, source, target);
      expect(failed.end.status).toBe('failed');
      const completed = await edit(server, source, target);
      expect(completed.end.status).toBe('completed');
      const resultId = completed.resultId as string;
      expect(await fileKept(server, resultId)).toBe(true);

      clock.advanceMinutes(DAYS * DAY_MIN - 1);
      await sweep();
      expect((await status(server, failed.initId)).body.data.status).toBe('failed');
      expect((await status(server, completed.initId)).body.data).toEqual(completed.end);
      expect(await fileKept(server, resultId)).toBe(true);

      clock.advanceMinutes(2);
      expect((await status(server, completed.initId)).status).toBe(200);
      expect(await server.ctx.cache.get(cacheKey(completed.initId))).toBeDefined();
      await sweep();

      for (const initId of [failed.initId, completed.initId]) {
        expect(await processRow(server, initId)).toBeUndefined();
        expect(await server.ctx.cache.get(cacheKey(initId))).toBeUndefined();
        expectFailure(await status(server, initId), 404, 5001, 'process_not_found');
      }
      expect(await fileKept(server, resultId)).toBe(false);
      expect((await fetch(`${server.url}${completed.end.result_url}`, { headers: SERVICE })).status).toBe(404);
      // Its uploads were made as long ago and nothing uses them any more: they went in the same sweep.
      for (const url of [source, target]) expect(await fileKept(server, fileIdOf(url))).toBe(false);
    });

    it('never deletes a process that is processing, nor the uploads it uses', async () => {
      const [source, target] = [fileIdOf(await uploadUrl(server)), fileIdOf(await uploadUrl(server))];
      // Written directly: a real job would end (complete, or fail on its timeout) long before the clock moves on.
      const now = clock.now().toISOString();
      const initId = newId();
      await repo.insertProcess(server.ctx.db.kysely, {
        init_id: initId,
        owner_id: SERVICE_PRINCIPAL_ID,
        status: 'processing',
        source_file_id: source,
        target_file_id: target,
        prompt: 'p',
        job_id: null,
        result_file_id: null,
        error: null,
        created_at: now,
        updated_at: now,
      });
      clock.advanceMinutes(10 * DAYS * DAY_MIN);
      await sweep();
      expect((await processRow(server, initId))?.status).toBe('processing');
      expect(await fileKept(server, source)).toBe(true);
      expect(await fileKept(server, target)).toBe(true);
    });

    it('deletes an upload unused for AI_EDIT_RETENTION_DAYS with its blobs, and keeps a younger one', async () => {
      const old = fileIdOf(await uploadUrl(server));
      clock.advanceMinutes(DAYS * DAY_MIN - 1);
      await sweep();
      expect(await fileKept(server, old)).toBe(true);
      const young = fileIdOf(await uploadUrl(server));
      clock.advanceMinutes(2);
      await sweep();
      expect(await fileKept(server, old)).toBe(false);
      expect(await fileKept(server, young)).toBe(true);
      expect((await fetch(`${server.url}/api/v1/files/${old}`, { headers: SERVICE })).status).toBe(404);
    });

    it('keeps an old upload that a recent process uses: one target booked again and again', async () => {
      const page = await uploadUrl(server);
      const firstChild = await uploadUrl(server);
      const first = await edit(server, firstChild, page);
      expect(first.end.status).toBe('completed');

      clock.advanceMinutes(DAYS * DAY_MIN + HOUR_MIN);
      const secondChild = await uploadUrl(server);
      const second = await edit(server, secondChild, page);
      expect(second.end.status).toBe('completed');
      await sweep();
      // The first edit is past the retention: it goes with its result and its own source.
      expect(await processRow(server, first.initId)).toBeUndefined();
      expect(await fileKept(server, first.resultId as string)).toBe(false);
      expect(await fileKept(server, fileIdOf(firstChild))).toBe(false);
      // The page is as old, but the second edit uses it: it stays, and can be booked again.
      expect(await fileKept(server, fileIdOf(page))).toBe(true);
      expect((await processRow(server, second.initId))?.status).toBe('completed');
      expect(await fileKept(server, second.resultId as string)).toBe(true);
      expect(await fileKept(server, fileIdOf(secondChild))).toBe(true);
      expect((await fetch(`${server.url}/api/v1/files/${fileIdOf(page)}`, { headers: SERVICE })).status).toBe(200);

      // Once no edit has used it for the retention, it goes too.
      clock.advanceMinutes(DAYS * DAY_MIN + HOUR_MIN);
      await sweep();
      expect(await processRow(server, second.initId)).toBeUndefined();
      for (const id of [fileIdOf(page), fileIdOf(secondChild), second.resultId as string]) expect(await fileKept(server, id)).toBe(false);
    });

    it('is harmless when two processes sweep at once: each thing is deleted once, and neither fails', async () => {
      // What earlier tests left behind goes first, so the counts below are this test's own.
      clock.advanceMinutes(DAYS * DAY_MIN + HOUR_MIN);
      await sweep();
      const unbooked = [await initiate(server), await initiate(server), await initiate(server)];
      const source = await uploadUrl(server);
      const target = await uploadUrl(server);
      const done = await edit(server, source, target);
      expect(done.end.status).toBe('completed');
      const unused = [fileIdOf(await uploadUrl(server)), fileIdOf(await uploadUrl(server))];
      clock.advanceMinutes(DAYS * DAY_MIN + HOUR_MIN);

      // On PostgreSQL a second server is a second process over the same data. Two SQLite connections in one Node
      // process would stall each other (better-sqlite3 waits for the lock synchronously): there the sweeps share one,
      // and still interleave at every query.
      const other = name === 'PostgreSQL' ? await startAiServer(server.env, { dataDir: server.dataDir, clock }) : undefined;
      try {
        const elsewhere = () => aiEditSweep((other ?? server).ctx).run();
        const counts = await Promise.all([sweep(), elsewhere(), sweep()]);
        // Three processes never booked, one finished with its result, its two uploads and two unused ones.
        expect(counts.reduce((a, b) => a + b, 0)).toBe(3 + 1 + 1 + 2 + 2);
        expect(await Promise.all([sweep(), elsewhere()])).toEqual([0, 0]);
      } finally {
        await other?.close();
      }
      for (const initId of [...unbooked, done.initId]) expect(await processRow(server, initId)).toBeUndefined();
      for (const id of [fileIdOf(source), fileIdOf(target), done.resultId as string, ...unused]) expect(await fileKept(server, id)).toBe(false);
    });

    it.skipIf(name !== 'PostgreSQL')('refuses a booking whose old upload the sweep is deleting at that moment (422), rather than book a process with a missing file', async () => {
      const source = await uploadUrl(server);
      const target = await uploadUrl(server);
      clock.advanceMinutes(DAYS * DAY_MIN + HOUR_MIN);
      const initId = await initiate(server);
      const before = new Date(clock.now().getTime() - DAYS * DAY_MIN * 60_000).toISOString();
      const { kysely } = server.ctx.db;
      let booking: ReturnType<typeof post> | undefined;
      // The sweep's upload step, paused after it locked its page: the booking must wait for it, then see the uploads gone.
      await kysely.transaction().execute(async (tx) => {
        const page = await repo.unusedUploads(tx, 'postgres', before, 500);
        expect(page).toEqual(expect.arrayContaining([fileIdOf(source), fileIdOf(target)]));
        booking = post(server.url, '/api/v1/process/book', SERVICE, { init_id: initId, source_url: source, target_url: target, prompt: 'p' });
        await expect
          .poll(async () => (await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`.execute(kysely)).rows[0]?.n)
          .toBe(1);
        await repo.deleteUnusedUploads(tx, before, page);
      });
      expectFailure(await (booking as ReturnType<typeof post>), 422, 4001, 'not_your_upload');
      expect((await processRow(server, initId))?.status).toBe('initiated');
    });
  });

  describe.skipIf(skip)(`AI_EDIT_RETENTION_DAYS=0, the default (${name})`, () => {
    const clock = new TestClock();
    let server: Server;
    beforeAll(async () => {
      server = await startOn(name, {}, { clock });
    });
    afterAll(async () => server?.close());

    it('keeps finished processes, results and uploads however old, and still deletes processes never booked', async () => {
      expect(server.ctx.config.aiEditRetentionDays).toBe(0);
      const source = await uploadUrl(server);
      const target = await uploadUrl(server);
      const done = await edit(server, source, target);
      expect(done.end.status).toBe('completed');
      const lone = fileIdOf(await uploadUrl(server));
      const unbooked = await initiate(server);

      clock.advanceMinutes(10 * 365 * DAY_MIN);
      const info = vi.spyOn(server.ctx.log, 'info');
      try {
        expect(await aiEditSweep(server.ctx).run()).toBe(1);
        // One line for a sweep that deleted something, with its counts; none for one that did not.
        expect(await aiEditSweep(server.ctx).run()).toBe(0);
        const lines = info.mock.calls.filter(([, message]) => message === 'AI-edit sweep deleted expired processes and files');
        expect(lines).toEqual([[{ unbooked: 1, finished: 0, results: 0, uploads: 0, retentionDays: 0 }, 'AI-edit sweep deleted expired processes and files']]);
      } finally {
        info.mockRestore();
      }
      expect(await processRow(server, unbooked)).toBeUndefined();
      expect((await status(server, done.initId)).body.data).toEqual(done.end);
      for (const id of [fileIdOf(source), fileIdOf(target), done.resultId as string, lone]) expect(await fileKept(server, id)).toBe(true);
    });
  });
}

describe.skipIf(!REDIS)('with the shared Redis cache (TEST_REDIS_URL)', () => {
  const namespace = `ai-edits-retention-${randomBytes(4).toString('hex')}`;
  const clock = new TestClock();
  // Made in beforeAll, not here: a describe that is skipped still runs its body, and would leave the directory.
  let data: ReturnType<typeof tempDataDir> | undefined;
  let a: TestServer | undefined;
  let b: TestServer | undefined;

  beforeAll(async () => {
    data = tempDataDir();
    const redisCache = () => new RedisCache({ url: REDIS, ttlSeconds: 3600, maxItems: 1000, namespace });
    const env = { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseUrl, AI_EDIT_RETENTION_DAYS: '1' };
    // Two processes over one database and one Redis: the one that sweeps is not the one that cached.
    a = await startAiServer(env, { dataDir: data.dir, clock, prepare: (ctx) => void (ctx.cache = redisCache()) });
    b = await startAiServer(env, { dataDir: data.dir, clock, prepare: (ctx) => void (ctx.cache = redisCache()) });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    // This run's keys go with it: the namespace is the test's own.
    if (a) await (a.ctx.cache as RedisCache).clear();
    await a?.ctx.cache.close();
    await b?.ctx.cache.close();
    data?.cleanup();
  });

  it('removes the entry of each process it deletes: another process that cached it answers it as unknown', async () => {
    const [sweeper, reader] = [a as TestServer, b as TestServer];
    const done = await edit(sweeper, await uploadUrl(sweeper), await uploadUrl(sweeper));
    expect(done.end.status).toBe('completed');
    const unbooked = await initiate(sweeper);
    clock.advanceMinutes(2 * DAY_MIN);
    for (const initId of [done.initId, unbooked]) expect((await status(reader, initId)).status).toBe(200);
    // The finished state is cached for the full TTL (the pending one only for 2 s, too short to count on here).
    expect(await reader.ctx.cache.get(cacheKey(done.initId))).toBeDefined();
    expect(await aiEditSweep(sweeper.ctx).run()).toBeGreaterThanOrEqual(2);
    for (const initId of [done.initId, unbooked]) {
      expect(await reader.ctx.cache.get(cacheKey(initId))).toBeUndefined();
      expectFailure(await status(reader, initId), 404, 5001, 'process_not_found');
    }
  });
});
