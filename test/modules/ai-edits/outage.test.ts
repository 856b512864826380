/**
 * An `ai_edit` job whose PostgreSQL connection drops mid-job: the job system retries it (a transient outage), so the
 * process must not be failed on the way ("The edit failed unexpectedly."); the next attempt completes it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAiEdit } from '../../../src/modules/ai-edits/job.js';
import { createImageEditor } from '../../../src/modules/ai-edits/provider.js';
import { createTestDatabase, droppedConnectionError, hasPostgres } from '../../helpers/pg.js';
import type { TestServer } from '../../helpers/server.js';
import { SERVICE, startAiServer, startEdit, waitForEnd } from './server.js';
import { until } from '../../helpers/until.js';
import { firstAttempt } from '../../platform/jobs/harness.js';

/** The image edit API, holding each answer until the test lets it go (`answerNext`), or answering at once after `open` (until `shut`). */
async function gatedModel() {
  const result = await sharp({ create: { width: 96, height: 64, channels: 3, background: '#336699' } }).png().toBuffer();
  const held: Array<() => void> = [];
  let gated = true;
  let received = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received++;
      const answer = () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ created: 1, data: [{ b64_json: result.toString('base64') }] }));
      };
      if (gated) held.push(answer);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    received: () => received,
    answerNext: () => held.shift()?.(),
    open() {
      gated = false;
      for (const answer of held.splice(0)) answer();
    },
    shut() {
      gated = true;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe.skipIf(!hasPostgres)(`an AI edit whose database connection drops mid-job${hasPostgres ? '' : ' (skipped: TEST_DATABASE_URL is not set)'}`, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let model: Awaited<ReturnType<typeof gatedModel>>;
  let server: TestServer;
  const sessions: pg.Client[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    model = await gatedModel();
    server = await startAiServer({ DATABASE_URL: database.url, OPENAI_API_KEY: 'sk-test-key', OPENAI_BASE_URL: model.baseUrl, OPENAI_TIMEOUT_SECONDS: '10' });
  });
  afterAll(async () => {
    for (const s of sessions) await s.end().catch(() => undefined);
    await server?.close();
    await model?.close();
    await database?.drop();
  });

  async function session(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: database.url });
    client.on('error', () => undefined);
    await client.connect();
    sessions.push(client);
    return client;
  }

  it('is retried without failing the process, and completes', async () => {
    const { initId } = await startEdit(server.url, SERVICE);
    const { job_id: jobId } = await server.ctx.db.kysely.selectFrom('ai_processes').select('job_id').where('init_id', '=', initId).executeTakeFirstOrThrow();
    await until(() => model.received() > 0);

    // The job's next write (its progress, once the model has answered) waits on a row lock, and its connection is cut.
    const [locker, admin] = [await session(), await session()];
    await locker.query('begin');
    await locker.query('select 1 from jobs where job_id = $1 for update', [jobId]);
    model.answerNext();
    const { rows } = await until(async () => {
      const found = await admin.query<{ pid: number }>(
        `select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query ilike 'update "jobs" set "progress"%'`,
      );
      return found.rows.length > 0 && found;
    });
    model.open();
    await admin.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
    await locker.query('rollback');

    const end = await waitForEnd(server.url, SERVICE, initId);
    expect(end).toMatchObject({ status: 'completed' });
    expect(await server.ctx.jobs.waitFor(jobId as string, 10_000)).toMatchObject({ status: 'completed', attempts: 2 });
  });

  it('leaves the process processing when the attempt that met the outage is not the last (the job runs again)', async () => {
    // The real job waits on the model meanwhile (held, as the test before left it open); this attempt runs beside it, as a first attempt of four.
    model.shut();
    const receivedBefore = model.received();
    const { initId } = await startEdit(server.url, SERVICE);
    await until(() => model.received() > receivedBefore);
    const dropped = await droppedConnectionError(database.url);
    const attempt = firstAttempt('ai_edit', 4, server.ctx.log, dropped);
    await expect(runAiEdit(server.ctx, createImageEditor(server.ctx.config), { init_id: initId }, attempt)).rejects.toBe(dropped);
    const row = await server.ctx.db.kysely.selectFrom('ai_processes').select('status').where('init_id', '=', initId).executeTakeFirstOrThrow();
    expect(row.status).toBe('processing');
    model.open();
    expect(await waitForEnd(server.url, SERVICE, initId)).toMatchObject({ status: 'completed' });
  });
});
