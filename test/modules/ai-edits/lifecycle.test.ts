/**
 * A process's life beyond the happy path: on PostgreSQL, when the job
 * system fails a job behind the handler's back, and when its owner deletes
 * their account.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheKey } from '../../../src/modules/ai-edits/service.js';
import { createTestDatabase, hasPostgres } from '../../helpers/pg.js';
import type { TestServer } from '../../helpers/server.js';
import { registerUser } from '../../helpers/users.js';
import { startFakeOpenAI, type FakeOpenAI } from './fake-openai.js';
import { post, SERVICE, startAiServer, startEdit, waitForEnd, type StatusData } from './server.js';

let fake: FakeOpenAI;
beforeAll(async () => {
  fake = await startFakeOpenAI();
});
afterAll(async () => fake.close());

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseUrl, ...extra };
}

describe.skipIf(!hasPostgres)('on PostgreSQL (TEST_DATABASE_URL)', () => {
  let server: TestServer;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    server = await startAiServer(env({ DATABASE_URL: db.url }));
  });
  afterAll(async () => {
    await server.close();
    await drop();
  });

  it('runs an edit to completion and refuses a second booking', async () => {
    const { initId, book } = await startEdit(server.url, SERVICE);
    expect(book.status).toBe(202);
    const done = await waitForEnd(server.url, SERVICE, initId);
    expect(done.status).toBe('completed');
    expect((await fetch(`${server.url}${done.result_url}`, { headers: SERVICE })).status).toBe(200);
    const again = await post(server.url, '/api/v1/process/book', SERVICE, { init_id: initId, source_url: done.result_url, target_url: done.result_url, prompt: 'p' });
    expect(again.status).toBe(409);
  });
});

describe('a job the job system gives up on', () => {
  let server: TestServer;
  beforeAll(async () => {
    // The provider call may take 5 s but the attempt only 300 ms: the job system's own timeout ends it.
    server = await startAiServer(env({ OPENAI_TIMEOUT_SECONDS: '5' }), { jobs: { maxAttempts: 1, timeoutMs: 300 } });
  });
  afterAll(async () => server.close());

  it('shows the process failed with the job\'s reason', async () => {
    fake.script.push({ kind: 'hang' });
    const { initId } = await startEdit(server.url, SERVICE);
    const end = await waitForEnd(server.url, SERVICE, initId);
    expect(end.status).toBe('failed');
    expect(end.error).toMatch(/took longer than 300 ms/);
    const row = await server.ctx.db.kysely.selectFrom('ai_processes').select(['status', 'error']).where('init_id', '=', initId).executeTakeFirstOrThrow();
    expect(row.status).toBe('failed');
  });

  it('shows a process failed whose job is gone (pruned past JOB_RETENTION_DAYS)', async () => {
    const { initId } = await startEdit(server.url, SERVICE);
    await waitForEnd(server.url, SERVICE, initId);
    // As a process left processing when its job ended behind the handler's back, and whose job row was pruned since.
    const { kysely } = server.ctx.db;
    await kysely.updateTable('ai_processes').set({ status: 'processing', job_id: 'job-pruned-long-ago' }).where('init_id', '=', initId).execute();
    await server.ctx.cache.delete(cacheKey(initId));
    const status = await post<StatusData>(server.url, '/api/v1/process/status', SERVICE, { init_id: initId });
    expect(status.body.data).toMatchObject({ status: 'failed', error: expect.stringMatching(/job is gone/) });
    expect((await kysely.selectFrom('ai_processes').select('status').where('init_id', '=', initId).executeTakeFirstOrThrow()).status).toBe('failed');
  });
});

describe('account deletion', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startAiServer(env());
  });
  afterAll(async () => server.close());

  it('deletes the user\'s processes, uploads, results and cache entries', async () => {
    const user = await registerUser(server.url);
    const { initId } = await startEdit(server.url, user.headers);
    const done = await waitForEnd(server.url, user.headers, initId);
    expect(done.status).toBe('completed');
    const other = await startEdit(server.url, SERVICE);
    await waitForEnd(server.url, SERVICE, other.initId);
    const fileIds = (await server.ctx.db.kysely.selectFrom('ai_files').select('file_id').where('owner_id', '=', user.id).execute()).map((r) => r.file_id);
    expect(fileIds).toHaveLength(3);

    const res = await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: user.headers });
    expect(res.status).toBe(204);

    const { kysely } = server.ctx.db;
    expect(await kysely.selectFrom('ai_processes').select('init_id').where('owner_id', '=', user.id).execute()).toEqual([]);
    expect(await kysely.selectFrom('ai_files').select('file_id').where('owner_id', '=', user.id).execute()).toEqual([]);
    for (const id of fileIds) expect(existsSync(path.join(server.dataDir, 'blobs', 'ai-edits', id))).toBe(false);
    expect(await server.ctx.cache.get(cacheKey(initId))).toBeUndefined();
    // Someone else's edit is untouched.
    const theirs = await post<StatusData>(server.url, '/api/v1/process/status', SERVICE, { init_id: other.initId });
    expect(theirs.body.data.status).toBe('completed');
  });
});
