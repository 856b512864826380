import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { bearer, call, login, register } from '../../auth/helpers.js';

const ADMIN = { email: 'Boss@Example.com', password: 'admin-password-1' };
let server: TestServer;
let adminHeaders: Record<string, string>;

beforeAll(async () => {
  server = await startServer({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
  const pair = await login(server.url, { id: '', username: '', ...ADMIN });
  adminHeaders = bearer(pair.access_token);
});
afterAll(async () => server.close());

interface Page {
  users: Array<{ id: string; is_active: boolean; is_admin: boolean }>;
  next_cursor: string | null;
}

describe('admin routes', () => {
  it('the ADMIN_EMAIL account is an admin', async () => {
    const me = await call(server.url, 'GET', '/users/me', { headers: adminHeaders });
    expect(me.body).toMatchObject({ email: ADMIN.email, is_admin: true, is_active: true });
  });

  it('are 401 without credentials and 403 for a non-admin', async () => {
    const pair = await login(server.url, await register(server.url));
    expect((await call(server.url, 'GET', '/admin/users')).status).toBe(401);
    const list = await call(server.url, 'GET', '/admin/users', { headers: bearer(pair.access_token) });
    expect(list.status).toBe(403);
    expect(list.headers.get('content-type')).toContain('application/problem+json');
    const patch = await call(server.url, 'PATCH', '/admin/users/whoever', { headers: bearer(pair.access_token), body: { is_admin: true } });
    expect(patch.status).toBe(403);
  });

  it('list every user once, page by page, in a stable order', async () => {
    for (let i = 0; i < 5; i++) await register(server.url);
    const total = await server.ctx.db.kysely.selectFrom('users').select(({ fn }) => fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `?limit=2&cursor=${encodeURIComponent(cursor)}` : '?limit=2';
      const res = await call<Page>(server.url, 'GET', `/admin/users${query}`, { headers: adminHeaders });
      expect(res.status).toBe(200);
      expect(res.body.users.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.users.map((u) => u.id));
      cursor = res.body.next_cursor;
      pages++;
    } while (cursor && pages < 50);
    expect(seen.length).toBe(Number(total.n));
    expect(new Set(seen).size).toBe(seen.length);
    const again = await call<Page>(server.url, 'GET', '/admin/users?limit=200', { headers: adminHeaders });
    expect(again.body.users.map((u) => u.id)).toEqual(seen);
    expect(again.body.next_cursor).toBeNull();
  });

  it('reject a forged cursor (422 invalid_cursor) and a limit out of range (422)', async () => {
    const forged = await call(server.url, 'GET', '/admin/users?cursor=garbage', { headers: adminHeaders });
    expect(forged.status).toBe(422);
    expect(forged.body).toMatchObject({ code: 'invalid_cursor', errors: [{ field: 'querystring.cursor', message: expect.any(String) }] });
    expect((await call(server.url, 'GET', '/admin/users?limit=0', { headers: adminHeaders })).status).toBe(422);
  });

  it('allow a limit of 1 to 200: 201 is 422', async () => {
    expect((await call(server.url, 'GET', '/admin/users?limit=200', { headers: adminHeaders })).status).toBe(200);
    const res = await call<{ code: string; errors: Array<{ field: string }> }>(server.url, 'GET', '/admin/users?limit=201', { headers: adminHeaders });
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('validation_error');
    expect(res.body.errors.map((e) => e.field)).toContain('querystring.limit');
  });

  it('a last page filled exactly to the limit has next_cursor null', async () => {
    for (let i = 0; i < 3; i++) await register(server.url);
    const total = Number((await server.ctx.db.kysely.selectFrom('users').select(({ fn }) => fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
    expect(total).toBeGreaterThan(2);
    expect(total).toBeLessThanOrEqual(200);
    const whole = await call<Page>(server.url, 'GET', `/admin/users?limit=${total}`, { headers: adminHeaders });
    expect(whole.status).toBe(200);
    expect(whole.body.users).toHaveLength(total);
    expect(whole.body.next_cursor).toBeNull();
    // Paged so that the second page is the last and exactly full.
    const first = await call<Page>(server.url, 'GET', `/admin/users?limit=${total - 2}`, { headers: adminHeaders });
    expect(first.body.next_cursor).toEqual(expect.any(String));
    const last = await call<Page>(server.url, 'GET', `/admin/users?limit=2&cursor=${encodeURIComponent(first.body.next_cursor as string)}`, { headers: adminHeaders });
    expect(last.body.users.map((u) => u.id)).toEqual(whole.body.users.slice(-2).map((u) => u.id));
    expect(last.body.next_cursor).toBeNull();
  });

  it('reject a cursor that decodes but is not a position Kiln writes: a bad time, a time not in its stored form, an id with a slash', async () => {
    const forge = (position: unknown): string => Buffer.from(JSON.stringify(position)).toString('base64url');
    for (const position of [['not a date', 'x'], ['2026-13-01T00:00:00.000Z', 'x'], ['2026-11-24T00:00:00Z', 'x'], ['2026-11-24T00:00:00.000Z', 'a/b'], ['2026-11-24T00:00:00.000Z', ''], ['2026-11-24T00:00:00.000Z', 'x', 'y'], { createdAt: '2026-11-24T00:00:00.000Z', id: 'x' }]) {
      const res = await call(server.url, 'GET', `/admin/users?cursor=${forge(position)}`, { headers: adminHeaders });
      expect(res.status, JSON.stringify(position)).toBe(422);
      expect(res.body).toMatchObject({ code: 'invalid_cursor' });
    }
    // The shape Kiln writes is read as a position: paging after a time later than every user gives an empty page.
    const later = await call<Page>(server.url, 'GET', `/admin/users?cursor=${forge(['2999-01-01T00:00:00.000Z', 'zzzzzzzzzzzzzzzzzzzzzz'])}`, { headers: adminHeaders });
    expect(later.status).toBe(200);
    expect(later.body).toEqual({ users: [], next_cursor: null });
  });

  it('take empty query values as absent, as the templates write them (?limit=&cursor=)', async () => {
    const res = await call<Page>(server.url, 'GET', '/admin/users?limit=&cursor=', { headers: adminHeaders });
    expect(res.status).toBe(200);
    expect(res.body.users.length).toBeGreaterThan(0);
  });

  it('give 50 users a page when no limit is given, or an empty one (docs/auth.md: default 50)', async () => {
    // More than 50 accounts, written straight to the table: 51 argon2 hashes would only slow the test down.
    const now = new Date().toISOString();
    const rows = Array.from({ length: 51 }, (_, i) => {
      const name = `bulk${i}${Math.random().toString(36).slice(2, 10)}`;
      return { id: `bulk-${name}`, email: `${name}@example.com`, email_lower: `${name}@example.com`, username: name, password_hash: 'not-a-hash', is_active: 1 as const, is_admin: 0 as const, created_at: now, updated_at: now };
    });
    await server.ctx.db.kysely.insertInto('users').values(rows).execute();
    for (const query of ['', '?limit=', '?limit=&cursor=']) {
      const res = await call<Page>(server.url, 'GET', `/admin/users${query}`, { headers: adminHeaders });
      expect(res.status, query).toBe(200);
      expect(res.body.users, query).toHaveLength(50);
      expect(res.body.next_cursor, query).toEqual(expect.any(String));
    }
  });

  it('deactivating a user stops its tokens at once; reactivating lets it log in again', async () => {
    const account = await register(server.url);
    const pair = await login(server.url, account);
    const off = await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: { is_active: false } });
    expect(off.status).toBe(200);
    expect(off.body).toMatchObject({ id: account.id, is_active: false });
    const refused = await call(server.url, 'GET', '/users/me', { headers: bearer(pair.access_token) });
    expect(refused.status).toBe(401);
    // While the account is deactivated its tokens say so, whoever issued them (docs/auth.md).
    expect(refused.body).toMatchObject({ code: 'invalid_token', detail: 'The token belongs to a deactivated account.' });
    expect((await call(server.url, 'POST', '/auth/refresh', { body: { refresh_token: pair.refresh_token } })).status).toBe(401);

    const on = await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: { is_active: true } });
    expect(on.body.is_active).toBe(true);
    await login(server.url, account);
    // The sessions of before the deactivation stay dead.
    expect((await call(server.url, 'POST', '/auth/refresh', { body: { refresh_token: pair.refresh_token } })).status).toBe(401);
  });

  it('deactivation revokes the sessions: a refresh token never presented while inactive is still 401 after reactivation', async () => {
    const account = await register(server.url);
    await login(server.url, account);
    const kept = await login(server.url, account);
    expect((await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: { is_active: false } })).status).toBe(200);
    expect((await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: { is_active: true } })).status).toBe(200);
    const res = await call(server.url, 'POST', '/auth/refresh', { body: { refresh_token: kept.refresh_token } });
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('invalid_refresh_token');
  });

  it('deactivation ends the API keys and access tokens for good: reactivating brings none of them back', async () => {
    const account = await register(server.url);
    const pair = await login(server.url, account);
    const key = await call<{ key: string }>(server.url, 'POST', '/auth/api-keys', { headers: bearer(pair.access_token), body: { name: 'script' } });
    expect(key.status).toBe(201);
    expect((await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: { is_active: false } })).status).toBe(200);
    expect((await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: { is_active: true } })).status).toBe(200);
    const token = await call(server.url, 'GET', '/users/me', { headers: bearer(pair.access_token) });
    expect(token.status).toBe(401);
    expect(token.body.code).toBe('token_revoked');
    expect((await call(server.url, 'GET', '/users/me', { headers: { 'x-api-key': key.body.key } })).status).toBe(401);
    const again = await login(server.url, account);
    expect((await call<unknown[]>(server.url, 'GET', '/auth/api-keys', { headers: bearer(again.access_token) })).body).toEqual([]);
  });

  it('an admin cannot deactivate or demote themselves (the last admin would leave none): 409, nothing changes; another admin can', async () => {
    const me = await call<{ id: string }>(server.url, 'GET', '/users/me', { headers: adminHeaders });
    for (const body of [{ is_admin: false }, { is_active: false }, { is_active: false, is_admin: true }]) {
      const res = await call(server.url, 'PATCH', `/admin/users/${me.body.id}`, { headers: adminHeaders, body });
      expect(res.status, JSON.stringify(body)).toBe(409);
      expect(res.body.code).toBe('own_admin_rights');
    }
    expect((await call(server.url, 'GET', '/users/me', { headers: adminHeaders })).body).toMatchObject({ is_admin: true, is_active: true });
    // Changing nothing of their own rights is fine.
    expect((await call(server.url, 'PATCH', `/admin/users/${me.body.id}`, { headers: adminHeaders, body: { is_admin: true } })).status).toBe(200);

    // A second admin may demote the first, and the other way round.
    const other = await register(server.url);
    expect((await call(server.url, 'PATCH', `/admin/users/${other.id}`, { headers: adminHeaders, body: { is_admin: true } })).status).toBe(200);
    const otherHeaders = bearer((await login(server.url, other)).access_token);
    expect((await call(server.url, 'PATCH', `/admin/users/${other.id}`, { headers: adminHeaders, body: { is_admin: false } })).status).toBe(200);
    expect((await call(server.url, 'GET', '/admin/users', { headers: otherHeaders })).status).toBe(403);
  });

  it('promoting or demoting a user ends none of its credentials', async () => {
    const account = await register(server.url);
    const pair = await login(server.url, account);
    const key = await call<{ key: string }>(server.url, 'POST', '/auth/api-keys', { headers: bearer(pair.access_token), body: { name: 'script' } });
    for (const is_admin of [true, false]) {
      expect((await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: { is_admin } })).status).toBe(200);
      expect((await call(server.url, 'GET', '/users/me', { headers: bearer(pair.access_token) })).status).toBe(200);
      expect((await call(server.url, 'GET', '/users/me', { headers: { 'x-api-key': key.body.key } })).status).toBe(200);
    }
  });

  it("a password change or a deactivation of one user ends none of another user's sessions", async () => {
    const a = await register(server.url);
    const b = await register(server.url);
    const aSession = await login(server.url, a);
    let bToken = (await login(server.url, b)).refresh_token;
    const stillOn = async () => {
      const res = await call<{ refresh_token: string }>(server.url, 'POST', '/auth/refresh', { body: { refresh_token: bToken } });
      expect(res.status).toBe(200);
      bToken = res.body.refresh_token;
    };
    const changed = await call(server.url, 'PUT', '/users/me', { headers: bearer(aSession.access_token), body: { password: 'another-password-1', current_password: a.password } });
    expect(changed.status).toBe(200);
    await stillOn();
    expect((await call(server.url, 'PATCH', `/admin/users/${a.id}`, { headers: adminHeaders, body: { is_active: false } })).status).toBe(200);
    await stillOn();
  });

  it('promoting a user gives it admin rights on its next request', async () => {
    const account = await register(server.url);
    const headers = bearer((await login(server.url, account)).access_token);
    expect((await call(server.url, 'GET', '/admin/users', { headers })).status).toBe(403);
    const res = await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: { is_admin: true } });
    expect(res.body.is_admin).toBe(true);
    expect((await call(server.url, 'GET', '/admin/users', { headers })).status).toBe(200);
  });

  it('a body value of the wrong type is 422 naming the field, never converted', async () => {
    const account = await register(server.url);
    await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: { is_admin: true } });
    for (const body of [{ is_admin: null }, { is_active: 0 }, { is_admin: [false] }, { is_active: 'false' }]) {
      const res = await call<{ code: string; errors: Array<{ field: string }> }>(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body });
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body.errors.map((e) => e.field).join(' '), JSON.stringify(body)).toMatch(/is_admin|is_active/);
    }
    const me = await call(server.url, 'GET', '/users/me', { headers: bearer((await login(server.url, account)).access_token) });
    expect(me.body).toMatchObject({ is_admin: true, is_active: true });
    // Query values are text, and are still read as the schema's types.
    expect((await call(server.url, 'GET', '/admin/users?limit=1', { headers: adminHeaders })).status).toBe(200);
  });

  it('a change to what a user already is writes nothing: updated_at stays', async () => {
    const account = await register(server.url);
    const first = await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: {} });
    expect(first.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 5));
    for (const body of [{}, { is_active: true }, { is_admin: false }, { is_active: true, is_admin: false }]) {
      const res = await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body });
      expect(res.body.updated_at, JSON.stringify(body)).toBe(first.body.updated_at);
    }
    const promoted = await call(server.url, 'PATCH', `/admin/users/${account.id}`, { headers: adminHeaders, body: { is_active: true, is_admin: true } });
    expect(promoted.body.is_admin).toBe(true);
    expect(promoted.body.updated_at).not.toBe(first.body.updated_at);
  });

  it('an unknown user is 404', async () => {
    expect((await call(server.url, 'PATCH', '/admin/users/nobody', { headers: adminHeaders, body: { is_admin: true } })).status).toBe(404);
  });
});
