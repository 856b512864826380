/** The AI-edit routes: the envelope and codes, credentials, uploads, booking rules and bad input. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closedPort } from '../../helpers/redis.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { startFakeOpenAI, type FakeOpenAI } from './fake-openai.js';
import { expectFailure, get, JPEG, post, SERVICE, startAiServer, upload, waitForEnd, type StatusData } from './server.js';

const ADMIN = { email: 'boss@example.com', password: 'boss-password-123' };

let fake: FakeOpenAI;
let server: TestServer;
let alice: TestUser;
let bob: TestUser;
let aliceKey: Record<string, string>;

async function apiKeyOf(user: TestUser): Promise<Record<string, string>> {
  const res = await fetch(`${server.url}/auth/api-keys`, { method: 'POST', headers: { ...user.headers, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'ai' }) });
  expect(res.status).toBe(201);
  return { 'x-api-key': ((await res.json()) as { key: string }).key };
}

async function initiate(headers: Record<string, string>): Promise<string> {
  const res = await post<{ init_id: string }>(server.url, '/api/v1/initiate-process', headers);
  expect(res.status).toBe(201);
  return res.body.data.init_id;
}

async function uploadUrl(headers: Record<string, string>, data: Buffer = JPEG): Promise<string> {
  const res = await upload(server.url, headers, data);
  expect(res.status).toBe(201);
  return res.body.data.url;
}


beforeAll(async () => {
  fake = await startFakeOpenAI();
  server = await startAiServer({ OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseUrl, ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
  alice = await registerUser(server.url, 'alice');
  bob = await registerUser(server.url, 'bob');
  aliceKey = await apiKeyOf(alice);
});
afterAll(async () => {
  await server.close();
  await fake.close();
});

describe('open routes', () => {
  it('GET /api/v1/ welcomes without credentials (1000)', async () => {
    const res = await get(server.url, '/api/v1/');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ success: true, code: 1000, data: { service: 'Kiln' } });
  });

  it('GET /api/v1/health reports database, blob store, job runner and model provider (1000)', async () => {
    const res = await get<{ status: string; checks: Record<string, { ok: boolean }> }>(server.url, '/api/v1/health');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ success: true, code: 1000, message: 'System healthy' });
    expect(Object.keys(res.body.data.checks).sort()).toEqual(['blob_store', 'database', 'job_runner', 'model_provider']);
    expect(res.body.data.checks.job_runner).toMatchObject({ ok: true });
  });

  it('documents every route in the OpenAPI document', async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    for (const p of ['/api/v1/', '/api/v1/health', '/api/v1/upload', '/api/v1/initiate-process', '/api/v1/process/book', '/api/v1/process/status', '/api/v1/cache/status', '/api/v1/files/{file_id}']) {
      expect(Object.keys(doc.paths)).toContain(p);
    }
  });

  it('leaves other /api/v1 paths to the app: an unknown one is problem+json', async () => {
    const res = await fetch(`${server.url}/api/v1/no-such-thing`, { headers: SERVICE });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });

  it('answers a method an AI-edit path does not take with 405 and Allow, in the envelope with the route\'s code', async () => {
    for (const [method, path, allow, code] of [
      ['GET', '/api/v1/upload', 'POST', 2001],
      ['PUT', '/api/v1/process/book', 'POST', 4001],
      ['DELETE', '/api/v1/health', 'GET, HEAD', 1001],
      ['POST', '/api/v1/', 'GET, HEAD', 1001],
      ['DELETE', '/api/v1/files/f1?size=thumb', 'GET, HEAD', 2001],
    ] as const) {
      const res = await fetch(`${server.url}${path}`, { method, headers: SERVICE });
      expect(res.headers.get('allow'), `${method} ${path}`).toBe(allow);
      expectFailure({ status: res.status, type: res.headers.get('content-type'), body: await res.json() }, 405, code, 'method_not_allowed');
    }
    // Another module's path under /api/v1 keeps problem+json.
    const other = await fetch(`${server.url}/api/v1/jobs/j1`, { method: 'DELETE', headers: SERVICE });
    expect(other.status).toBe(405);
    expect(other.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });

  it('answers a file id too long to route with 414 in the envelope', async () => {
    const res = await fetch(`${server.url}/api/v1/files/${'f'.repeat(101)}`, { headers: SERVICE });
    expectFailure({ status: res.status, type: res.headers.get('content-type'), body: await res.json() }, 414, 2001, 'uri_too_long');
  });
});

describe('credentials', () => {
  const routes: Array<[string, string, number, () => unknown]> = [
    ['POST', '/api/v1/upload', 2001, () => undefined],
    ['POST', '/api/v1/initiate-process', 3001, () => undefined],
    ['POST', '/api/v1/process/book', 4001, () => ({ init_id: 'x', source_url: '/a', target_url: '/b', prompt: 'p' })],
    ['POST', '/api/v1/process/status', 5001, () => ({ init_id: 'x' })],
    ['GET', '/api/v1/cache/status', 6001, () => undefined],
    ['GET', '/api/v1/files/abc', 2001, () => undefined],
  ];
  const bad: Array<[string, Record<string, string>]> = [
    ['none', {}],
    ['a wrong X-API-Key', { 'x-api-key': 'not-the-key' }],
    ['a user-shaped key nobody has', { 'x-api-key': `kiln_deadbeef_${'A'.repeat(43)}` }],
    ['a bad bearer token', { authorization: 'Bearer nonsense' }],
  ];
  for (const [method, route, code] of routes) {
    for (const [what, headers] of bad) {
      it(`${method} ${route} with ${what}: 401 in the envelope, code ${code}`, async () => {
        const body = routes.find((r) => r[1] === route)?.[3]();
        const res = method === 'GET' ? await get(server.url, route, headers) : await post(server.url, route, headers, body);
        expectFailure(res, 401, code);
      });
    }
  }

  it('takes the static API_KEY, a user\'s API key and a bearer token', async () => {
    for (const headers of [SERVICE, aliceKey, alice.headers]) {
      expect((await upload(server.url, headers)).status).toBe(201);
    }
  });
});

describe('POST /api/v1/initiate-process', () => {
  it('answers an init_id with code 3000', async () => {
    const res = await post<{ init_id: string }>(server.url, '/api/v1/initiate-process', alice.headers);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ success: true, code: 3000, message: 'Process initiated' });
    expect(res.body.data.init_id).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    const status = await post<StatusData>(server.url, '/api/v1/process/status', alice.headers, { init_id: res.body.data.init_id });
    expect(status.body).toMatchObject({ success: true, code: 5000, data: { init_id: res.body.data.init_id, status: 'initiated' } });
  });
});

describe('POST /api/v1/process/book', () => {
  async function book(headers: Record<string, string>, body: Record<string, unknown>) {
    return post(server.url, '/api/v1/process/book', headers, body);
  }

  it('accepts the caller\'s own upload urls, relative or absolute on this host', async () => {
    const initId = await initiate(alice.headers);
    const res = await book(alice.headers, { init_id: initId, source_url: await uploadUrl(alice.headers), target_url: `${server.url}${await uploadUrl(alice.headers)}`, prompt: 'x'.repeat(4000) });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ success: true, code: 4000, message: 'Processing started', data: { init_id: initId, status: 'processing' } });
    expect((await waitForEnd(server.url, alice.headers, initId)).status).toBe('completed');
  });

  it('books, queues the job and records its id together: when the job cannot be written, the process is left as it was, to be booked again', async () => {
    const initId = await initiate(alice.headers);
    const body = { init_id: initId, source_url: await uploadUrl(alice.headers), target_url: await uploadUrl(alice.headers), prompt: 'p' };
    // The database refuses AI-edit jobs (as a connection lost between the writes would fail the second).
    await sql`create trigger refuse_ai_jobs before insert on jobs when new.type = 'ai_edit' begin select raise(abort, 'no jobs now'); end`.execute(server.ctx.db.kysely);
    try {
      expect((await book(alice.headers, body)).status).toBe(500);
    } finally {
      await sql`drop trigger refuse_ai_jobs`.execute(server.ctx.db.kysely);
    }
    const left = await server.ctx.db.kysely.selectFrom('ai_processes').select(['status', 'job_id']).where('init_id', '=', initId).executeTakeFirstOrThrow();
    expect(left).toEqual({ status: 'initiated', job_id: null });
    expect((await book(alice.headers, body)).status).toBe(202);
    expect((await waitForEnd(server.url, alice.headers, initId)).status).toBe('completed');
  });

  it('answers 404 (4001) for an unknown init_id and for someone else\'s', async () => {
    const body = { source_url: await uploadUrl(alice.headers), target_url: await uploadUrl(alice.headers), prompt: 'p' };
    expectFailure(await book(alice.headers, { ...body, init_id: 'no-such-process-id-000' }), 404, 4001, 'process_not_found');
    expectFailure(await book(alice.headers, { ...body, init_id: await initiate(bob.headers) }), 404, 4001, 'process_not_found');
  });

  it('refuses urls outside Kiln without fetching them (422, 4001)', async () => {
    let hits = 0;
    const outside = http.createServer((_req, res) => {
      hits++;
      res.writeHead(200, { 'content-type': 'image/jpeg' }).end(JPEG);
    });
    await new Promise<void>((r) => outside.listen(0, '127.0.0.1', r));
    const elsewhere = `http://127.0.0.1:${(outside.address() as AddressInfo).port}`;
    const own = await uploadUrl(alice.headers);
    const fileId = own.split('/').pop() as string;
    const initId = await initiate(alice.headers);
    for (const url of [`${elsewhere}/photo.jpg`, `${elsewhere}/api/v1/files/${fileId}`, 'https://example.com/api/v1/files/x', 'ftp://x/y', 'not a url', `/api/v1/files/${fileId}/../x`, '/etc/passwd']) {
      expectFailure(await book(alice.headers, { init_id: initId, source_url: url, target_url: own, prompt: 'p' }), 422, 4001, 'not_your_upload');
      expectFailure(await book(alice.headers, { init_id: initId, source_url: own, target_url: url, prompt: 'p' }), 422, 4001, 'not_your_upload');
    }
    outside.close();
    expect(hits).toBe(0);
    // A rejected booking changes nothing.
    expect((await post<StatusData>(server.url, '/api/v1/process/status', alice.headers, { init_id: initId })).body.data.status).toBe('initiated');
  });

  it('refuses the url of the caller\'s own upload with a query added, relative or absolute (422, 4001)', async () => {
    const own = await uploadUrl(alice.headers);
    const initId = await initiate(alice.headers);
    for (const url of [`${own}?size=thumb`, `${server.url}${own}?size=thumb`, `${server.url}${own}?x=1`]) {
      expectFailure(await book(alice.headers, { init_id: initId, source_url: url, target_url: own, prompt: 'p' }), 422, 4001, 'not_your_upload');
      expectFailure(await book(alice.headers, { init_id: initId, source_url: own, target_url: url, prompt: 'p' }), 422, 4001, 'not_your_upload');
    }
    expect((await post<StatusData>(server.url, '/api/v1/process/status', alice.headers, { init_id: initId })).body.data.status).toBe('initiated');
  });

  it('refuses another user\'s upload (422, 4001)', async () => {
    const initId = await initiate(alice.headers);
    const res = await book(alice.headers, { init_id: initId, source_url: await uploadUrl(bob.headers), target_url: await uploadUrl(alice.headers), prompt: 'p' });
    expectFailure(res, 422, 4001, 'not_your_upload');
  });

  it.each([
    ['empty', ''],
    ['4001 characters', 'x'.repeat(4001)],
    ['10,000 characters', 'y'.repeat(10_000)],
    ['4001 code points of an emoji (8002 UTF-16 units)', '\u{1F3F0}'.repeat(4001)],
  ])('refuses a prompt that is %s (422, 4001)', async (_what, prompt) => {
    const initId = await initiate(alice.headers);
    const res = await book(alice.headers, { init_id: initId, source_url: await uploadUrl(alice.headers), target_url: await uploadUrl(alice.headers), prompt });
    expectFailure(res, 422, 4001, 'validation_error');
    expect((res.body.data as { errors: Array<{ field: string }> }).errors[0]?.field).toBe('body.prompt');
  });

  it('counts a prompt in code points: 4000 emoji (8000 UTF-16 units) are accepted', async () => {
    const initId = await initiate(alice.headers);
    const res = await book(alice.headers, { init_id: initId, source_url: await uploadUrl(alice.headers), target_url: await uploadUrl(alice.headers), prompt: '\u{1F3F0}'.repeat(4000) });
    expect(res.status).toBe(202);
    expect((await waitForEnd(server.url, alice.headers, initId)).status).toBe('completed');
  });

  it('refuses a missing field (422) and a second booking of a busy or finished process (409)', async () => {
    const initId = await initiate(alice.headers);
    expectFailure(await book(alice.headers, { init_id: initId, prompt: 'p' }), 422, 4001, 'validation_error');
    const body = { init_id: initId, source_url: await uploadUrl(alice.headers), target_url: await uploadUrl(alice.headers), prompt: 'p' };
    expect((await book(alice.headers, body)).status).toBe(202);
    expectFailure(await book(alice.headers, body), 409, 4001);
  });
});

describe('POST /api/v1/process/status', () => {
  it('answers 404 (5001) for an unknown init_id, a malformed one and someone else\'s', async () => {
    for (const initId of ['unknown-init-id-000000', '../../etc', await initiate(bob.headers)]) {
      expectFailure(await post(server.url, '/api/v1/process/status', alice.headers, { init_id: initId }), 404, 5001, 'process_not_found');
    }
  });

  it('wants an init_id (422, 5001)', async () => {
    expectFailure(await post(server.url, '/api/v1/process/status', alice.headers, {}), 422, 5001, 'validation_error');
  });
});

describe('GET /api/v1/cache/status', () => {
  it('answers the static API_KEY and admins with the cache\'s figures (6000)', async () => {
    const initId = await initiate(SERVICE);
    await post(server.url, '/api/v1/process/status', SERVICE, { init_id: initId });
    const admin = await fetch(`${server.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(ADMIN) });
    const { access_token } = (await admin.json()) as { access_token: string };
    for (const headers of [SERVICE, { authorization: `Bearer ${access_token}` }]) {
      const res = await get<{ size: number; max_size: number; ttl_seconds: number; hits: number; misses: number; evictions: number; entries: Array<{ key: string; expires_at: string }> }>(
        server.url,
        '/api/v1/cache/status',
        headers,
      );
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ success: true, code: 6000, data: { max_size: 1000, ttl_seconds: 3600 } });
      expect(res.body.data.hits).toBeGreaterThanOrEqual(1);
      expect(res.body.data.entries.map((e) => e.key)).toContain(`ai-edits:process:${initId}`);
      expect(res.body.data.entries[0]?.expires_at).toMatch(/Z$/);
    }
  });

  it('answers 503 cache_unavailable (6001), not a 500, while the Redis cache cannot be reached', async () => {
    const down = await startAiServer({ REDIS_URL: `redis://127.0.0.1:${await closedPort()}` });
    try {
      expectFailure(await get(down.url, '/api/v1/cache/status', SERVICE), 503, 6001, 'cache_unavailable');
    } finally {
      await down.close();
    }
  });

  it('refuses everyone else with 403 and code 6001', async () => {
    expectFailure(await get(server.url, '/api/v1/cache/status', alice.headers), 403, 6001, 'admin_required');
    expectFailure(await get(server.url, '/api/v1/cache/status', aliceKey), 403, 6001, 'admin_required');
  });
});

describe('without OPENAI_API_KEY', () => {
  let bare: TestServer;
  beforeAll(async () => {
    bare = await startAiServer({});
  });
  afterAll(async () => bare.close());

  it('answers /process/book with 503 (4001) saying what to set, and books nothing', async () => {
    const source = await upload(bare.url, SERVICE);
    const init = await post<{ init_id: string }>(bare.url, '/api/v1/initiate-process', SERVICE);
    const res = await post(bare.url, '/api/v1/process/book', SERVICE, { init_id: init.body.data.init_id, source_url: source.body.data.url, target_url: source.body.data.url, prompt: 'p' });
    expectFailure(res, 503, 4001, 'provider_not_configured');
    expect(res.body.message).toContain('OPENAI_API_KEY');
    const status = await post<StatusData>(bare.url, '/api/v1/process/status', SERVICE, { init_id: init.body.data.init_id });
    expect(status.body.data.status).toBe('initiated');
  });

  it('reports the model provider unhealthy (503, 1001)', async () => {
    const raw = await fetch(`${bare.url}/api/v1/health`);
    expect(raw.headers.get('cache-control')).toBe('no-store');
    const res = await get<{ checks: Record<string, { ok: boolean; error?: string }> }>(bare.url, '/api/v1/health');
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ success: false, code: 1001 });
    expect(res.body.data.checks.model_provider).toEqual({ ok: false, error: 'OPENAI_API_KEY is not set' });
  });
});

describe('the job runner in /api/v1/health', () => {
  type Health = { status: string; checks: Record<string, { ok: boolean; error?: string }> };

  async function health(env: Record<string, string>, startJobs: boolean): Promise<Awaited<ReturnType<typeof get<Health>>>> {
    const other = await startServer({ API_KEY: SERVICE['x-api-key'], OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseUrl, FETCH_ALLOWED_HOSTS: '127.0.0.1', ...env }, { startJobs });
    try {
      return await get<Health>(other.url, '/api/v1/health');
    } finally {
      await other.close();
    }
  }

  it('is unhealthy (503, 1001) when REDIS_URL points at a Redis nobody answers on, though kiln serve starts', async () => {
    // `kiln serve` with an unreachable Redis starts and serves (it logs and retries): only the health check can tell.
    const res = await health({ REDIS_URL: 'redis://127.0.0.1:1' }, true);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ success: false, code: 1001, message: 'System unhealthy', data: { status: 'unhealthy' } });
    // Bounded by the runner's own check: it answers `unreachable`, where a probe that waited on ioredis
    // reconnecting would be cut off by the health route's limit and answer `timed out`.
    expect(res.body.data.checks.job_runner).toMatchObject({ ok: false, error: 'unreachable' });
    for (const name of ['database', 'blob_store', 'model_provider']) expect(res.body.data.checks[name]).toMatchObject({ ok: true });
  });

  it('is unhealthy while the in-process runner is not started (jobs would only queue up)', async () => {
    const res = await health({}, false);
    expect(res.status).toBe(503);
    expect(res.body.data.checks.job_runner).toMatchObject({ ok: false });
    expect(res.body.data.checks.database).toMatchObject({ ok: true });
  });

  it.skipIf(!process.env.TEST_REDIS_URL)(`is healthy with a Redis that answers${process.env.TEST_REDIS_URL ? '' : ' (skipped: TEST_REDIS_URL is not set)'}`, async () => {
    const url = process.env.TEST_REDIS_URL as string;
    // The runner's queue writes under a REDIS_PREFIX of the server's own, which closing it removes (test/helpers/server.ts).
    const res = await health({ REDIS_URL: url }, true);
    expect(res.status).toBe(200);
    expect(res.body.data.checks.job_runner).toMatchObject({ ok: true });
  });
});
