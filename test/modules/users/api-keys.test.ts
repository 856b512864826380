import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { bearer, call, ISO_UTC, login, register, TestClock } from '../../auth/helpers.js';

const STATIC_KEY = 'static-service-key-for-tests-0123456789';
let server: TestServer;

beforeAll(async () => {
  server = await startServer({ API_KEY: STATIC_KEY });
});
afterAll(async () => server.close());

async function signedIn() {
  const account = await register(server.url);
  const pair = await login(server.url, account);
  return { account, headers: bearer(pair.access_token) };
}

describe('API keys', () => {
  it('are shown once on creation, stored hashed, listed by prefix only', async () => {
    const { headers } = await signedIn();
    const created = await call(server.url, 'POST', '/auth/api-keys', { headers, body: { name: 'build server' } });
    expect(created.status).toBe(201);
    expect(created.headers.get('cache-control')).toBe('no-store');
    expect(Object.keys(created.body).sort()).toEqual(['created_at', 'id', 'key', 'name', 'prefix']);
    const key = String(created.body.key);
    expect(key).toMatch(new RegExp(`^kiln_${String(created.body.prefix)}_`));
    expect(created.body.created_at).toMatch(ISO_UTC);

    const row = await server.ctx.db.kysely.selectFrom('api_keys').selectAll().where('id', '=', String(created.body.id)).executeTakeFirstOrThrow();
    const rowText = JSON.stringify(row);
    expect(rowText).not.toContain(key);
    expect(rowText).not.toContain(key.split('_').slice(2).join('_'));

    const list = await call<Array<Record<string, unknown>>>(server.url, 'GET', '/auth/api-keys', { headers });
    expect(list.status).toBe(200);
    expect(list.body).toHaveLength(1);
    expect(list.body[0]).toEqual({ id: created.body.id, name: 'build server', prefix: created.body.prefix, created_at: created.body.created_at, last_used_at: null });
    expect(JSON.stringify(list.body)).not.toContain(key);
  });

  it('act as their owner in X-API-Key or as a bearer token, and record last use', async () => {
    const { account, headers } = await signedIn();
    const key = String((await call(server.url, 'POST', '/auth/api-keys', { headers, body: { name: 'k' } })).body.key);
    const viaHeader = await call(server.url, 'GET', '/users/me', { headers: { 'x-api-key': key } });
    expect(viaHeader.status).toBe(200);
    expect(viaHeader.body.id).toBe(account.id);
    const viaBearer = await call(server.url, 'GET', '/users/me', { headers: bearer(key) });
    expect(viaBearer.body.id).toBe(account.id);
    const list = await call<Array<Record<string, unknown>>>(server.url, 'GET', '/auth/api-keys', { headers });
    expect(list.body[0]?.last_used_at).toMatch(ISO_UTC);
  });

  it('stop working the moment they are deleted', async () => {
    const { headers } = await signedIn();
    const created = await call(server.url, 'POST', '/auth/api-keys', { headers, body: { name: 'k' } });
    const key = { 'x-api-key': String(created.body.key) };
    expect((await call(server.url, 'GET', '/users/me', { headers: key })).status).toBe(200);
    expect((await call(server.url, 'DELETE', `/auth/api-keys/${String(created.body.id)}`, { headers })).status).toBe(204);
    expect((await call(server.url, 'GET', '/users/me', { headers: key })).status).toBe(401);
  });

  it('a DELETE that says its empty body is JSON is still a DELETE (204)', async () => {
    const { headers } = await signedIn();
    const created = await call(server.url, 'POST', '/auth/api-keys', { headers, body: { name: 'k' } });
    const res = await fetch(`${server.url}/auth/api-keys/${String(created.body.id)}`, { method: 'DELETE', headers: { ...headers, 'content-type': 'application/json' } });
    expect(res.status).toBe(204);
    // A route that needs a body says which: an empty one is a 422 naming it.
    const empty = await fetch(`${server.url}/auth/api-keys`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' } });
    expect(empty.status).toBe(422);
    expect(((await empty.json()) as { errors: Array<{ field: string }> }).errors[0]?.field).toBe('body');
  });

  it("someone else's key answers 404 on delete and keeps working", async () => {
    const owner = await signedIn();
    const other = await signedIn();
    const created = await call(server.url, 'POST', '/auth/api-keys', { headers: owner.headers, body: { name: 'k' } });
    const res = await call(server.url, 'DELETE', `/auth/api-keys/${String(created.body.id)}`, { headers: other.headers });
    expect(res.status).toBe(404);
    expect((await call(server.url, 'GET', '/users/me', { headers: { 'x-api-key': String(created.body.key) } })).status).toBe(200);
  });

  it("someone else's key answers on delete exactly as a key that never existed: nothing tells it exists", async () => {
    const owner = await signedIn();
    const other = await signedIn();
    const created = await call(server.url, 'POST', '/auth/api-keys', { headers: owner.headers, body: { name: 'k' } });
    const theirs = await call(server.url, 'DELETE', `/auth/api-keys/${String(created.body.id)}`, { headers: other.headers });
    const missing = await call(server.url, 'DELETE', `/auth/api-keys/${'A'.repeat(String(created.body.id).length)}`, { headers: other.headers });
    expect(theirs.status).toBe(404);
    expect(theirs.headers.get('content-type')).toBe(missing.headers.get('content-type'));
    expect(theirs.body).toEqual(missing.body);
  });

  it('a wrong or forged key is 401, even on a public route', async () => {
    for (const value of ['kiln_00000000_' + 'A'.repeat(43), 'nonsense']) {
      const res = await call(server.url, 'GET', '/', { headers: { 'x-api-key': value } });
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
  });

  it('cannot make another key, nor delete the account: that takes a session (403 session_required)', async () => {
    const { headers } = await signedIn();
    const created = await call(server.url, 'POST', '/auth/api-keys', { headers, body: { name: 'leaky' } });
    const key = { 'x-api-key': String(created.body.key) };
    for (const credentials of [key, bearer(String(created.body.key))]) {
      const minted = await call(server.url, 'POST', '/auth/api-keys', { headers: credentials, body: { name: 'backup' } });
      expect(minted).toMatchObject({ status: 403, body: { code: 'session_required' } });
      const gone = await call(server.url, 'DELETE', '/users/me', { headers: credentials });
      expect(gone).toMatchObject({ status: 403, body: { code: 'session_required' } });
    }
    // Nothing was made or removed: one key, and the account answers.
    expect((await call<unknown[]>(server.url, 'GET', '/auth/api-keys', { headers })).body).toHaveLength(1);
    expect((await call(server.url, 'GET', '/users/me', { headers: key })).status).toBe(200);
    // With the session, both work.
    expect((await call(server.url, 'POST', '/auth/api-keys', { headers, body: { name: 'second' } })).status).toBe(201);
    expect((await call(server.url, 'DELETE', '/users/me', { headers })).status).toBe(204);
  });

  it('need a name (422) and credentials (401)', async () => {
    const { headers } = await signedIn();
    expect((await call(server.url, 'POST', '/auth/api-keys', { headers, body: {} })).status).toBe(422);
    // A name of spaces only would be stored as no name at all.
    const blank = await call<{ errors: Array<{ field: string }> }>(server.url, 'POST', '/auth/api-keys', { headers, body: { name: ' \t ' } });
    expect(blank.status).toBe(422);
    expect(blank.body.errors[0]?.field).toBe('body.name');
    const padded = await call(server.url, 'POST', '/auth/api-keys', { headers, body: { name: '  ci  ' } });
    expect(padded.body.name).toBe('ci');
    expect((await call(server.url, 'POST', '/auth/api-keys', { body: { name: 'k' } })).status).toBe(401);
    expect((await call(server.url, 'GET', '/auth/api-keys')).status).toBe(401);
  });
});

describe('the static API_KEY', () => {
  it('acts as an admin', async () => {
    const res = await call(server.url, 'GET', '/admin/users', { headers: { 'x-api-key': STATIC_KEY } });
    expect(res.status).toBe(200);
    expect(Array.isArray(res.body.users)).toBe(true);
  });

  it('is compared exactly: a near miss is 401', async () => {
    expect((await call(server.url, 'GET', '/admin/users', { headers: { 'x-api-key': STATIC_KEY + 'x' } })).status).toBe(401);
  });

  it('is compared whole and in its case: an empty key, a prefix of it, or it in another case is 401', async () => {
    for (const value of ['', STATIC_KEY.slice(0, 10), STATIC_KEY.slice(0, -1), STATIC_KEY.toUpperCase()]) {
      const res = await call(server.url, 'GET', '/admin/users', { headers: { 'x-api-key': value } });
      expect(res.status, JSON.stringify(value)).toBe(401);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
    expect((await call(server.url, 'GET', '/admin/users', { headers: { 'x-api-key': STATIC_KEY } })).status).toBe(200);
  });
});

describe('a bearer token and an API key sent together', () => {
  it('both must be good: a valid bearer token with a forged key is 401', async () => {
    const { headers } = await signedIn();
    expect((await call(server.url, 'GET', '/users/me', { headers })).status).toBe(200);
    for (const forged of ['kiln_00000000_' + 'A'.repeat(43), 'nonsense']) {
      const res = await call(server.url, 'GET', '/users/me', { headers: { ...headers, 'x-api-key': forged } });
      expect(res.status, forged).toBe(401);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
  });

  it("the bearer token wins: user A's bearer with user B's key acts as A", async () => {
    const a = await signedIn();
    const b = await signedIn();
    const bKey = String((await call(server.url, 'POST', '/auth/api-keys', { headers: b.headers, body: { name: 'k' } })).body.key);
    const res = await call(server.url, 'GET', '/users/me', { headers: { ...a.headers, 'x-api-key': bKey } });
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(a.account.id);
  });
});

describe('last_used_at (moved by an injected clock)', () => {
  const clock = new TestClock();
  let clocked: TestServer;
  beforeAll(async () => {
    clocked = await startServer({}, { clock });
  });
  afterAll(async () => clocked.close());

  it('is written at the first use, not again within a minute, and again once more than a minute has passed', async () => {
    const headers = bearer((await login(clocked.url, await register(clocked.url))).access_token);
    const key = { 'x-api-key': String((await call(clocked.url, 'POST', '/auth/api-keys', { headers, body: { name: 'k' } })).body.key) };
    const lastUsed = async () => (await call<Array<{ last_used_at: string | null }>>(clocked.url, 'GET', '/auth/api-keys', { headers })).body[0]?.last_used_at;
    expect((await call(clocked.url, 'GET', '/users/me', { headers: key })).status).toBe(200);
    const first = await lastUsed();
    expect(first).toMatch(ISO_UTC);
    clock.advanceSeconds(30);
    expect((await call(clocked.url, 'GET', '/users/me', { headers: key })).status).toBe(200);
    expect(await lastUsed()).toBe(first);
    clock.advanceSeconds(45);
    expect((await call(clocked.url, 'GET', '/users/me', { headers: key })).status).toBe(200);
    const second = await lastUsed();
    expect(second).toMatch(ISO_UTC);
    expect(Date.parse(second as string) - Date.parse(first as string)).toBeGreaterThanOrEqual(75_000);
  });
});
