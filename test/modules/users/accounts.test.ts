import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { bearer, call, ISO_UTC, login, newAccountFields, register } from '../../auth/helpers.js';

let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => server.close());

describe('POST /auth/register', () => {
  it('creates an account and answers it without any secret', async () => {
    const fields = newAccountFields();
    const res = await call(server.url, 'POST', '/auth/register', { body: fields });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body).sort()).toEqual(['created_at', 'email', 'id', 'is_active', 'is_admin', 'updated_at', 'username']);
    expect(res.body).toMatchObject({ email: fields.email, username: fields.username, is_active: true, is_admin: false });
    expect(res.body.created_at).toMatch(ISO_UTC);
    expect(String(res.body.id).length).toBeGreaterThanOrEqual(16);
  });

  it.each([{ isAdmin: true }, { is_admin: true }, { admin: true }, { isAdmin: 1, is_active: false }])(
    'never makes an admin, whatever else the body says (%j): only ADMIN_EMAIL and kiln users create --admin do',
    async (extra) => {
      const fields = newAccountFields();
      const res = await call(server.url, 'POST', '/auth/register', { body: { ...fields, ...extra } });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({ is_admin: false, is_active: true });
      const session = await login(server.url, { ...fields, id: String(res.body.id) });
      expect((await call(server.url, 'GET', '/admin/users', { headers: bearer(session.access_token) })).status).toBe(403);
    },
  );

  it('stores the password as an argon2id hash, never in plain text', async () => {
    const account = await register(server.url);
    const row = await server.ctx.db.kysely.selectFrom('users').selectAll().where('id', '=', account.id).executeTakeFirstOrThrow();
    expect(row.password_hash).toMatch(/^\$argon2id\$/);
    expect(JSON.stringify(row)).not.toContain(account.password);
    expect(row.is_active).toBe(1);
  });

  it("hashes with OWASP's argon2id parameters: 19 MiB (m=19456), 2 passes (t=2), 1 lane", async () => {
    const account = await register(server.url);
    const row = await server.ctx.db.kysely.selectFrom('users').select('password_hash').where('id', '=', account.id).executeTakeFirstOrThrow();
    expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
  });

  it('refuses an email that differs only in case (409 email_taken)', async () => {
    const account = await register(server.url);
    const res = await call(server.url, 'POST', '/auth/register', {
      body: { ...newAccountFields(), email: account.email.toUpperCase() },
    });
    expect(res.status).toBe(409);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.body.code).toBe('email_taken');
  });

  it('refuses a taken username (409 username_taken)', async () => {
    const account = await register(server.url);
    const res = await call(server.url, 'POST', '/auth/register', { body: { ...newAccountFields(), username: account.username } });
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('username_taken');
  });

  it('refuses a password shorter than 8 characters (422) and creates nothing', async () => {
    const fields = { ...newAccountFields(), password: 'short12' };
    const res = await call(server.url, 'POST', '/auth/register', { body: fields });
    expect(res.status).toBe(422);
    expect(JSON.stringify(res.body.errors)).toContain('password');
    const row = await server.ctx.db.kysely.selectFrom('users').select('id').where('username', '=', fields.username).executeTakeFirst();
    expect(row).toBeUndefined();
  });

  it('takes a password of exactly 8 characters: the least there is', async () => {
    const fields = { ...newAccountFields(), password: 'eight-ch' };
    expect(fields.password).toHaveLength(8);
    const res = await call(server.url, 'POST', '/auth/register', { body: fields });
    expect(res.status).toBe(201);
    await login(server.url, { ...fields, id: String(res.body.id) });
  });

  it('refuses a malformed email (422)', async () => {
    const res = await call(server.url, 'POST', '/auth/register', { body: { ...newAccountFields(), email: 'not-an-email' } });
    expect(res.status).toBe(422);
  });
});

describe('POST /auth/login', () => {
  it('answers a bearer pair; the email matches in any case', async () => {
    const account = await register(server.url);
    const res = await call(server.url, 'POST', '/auth/login', { body: { email: account.email.toLowerCase(), password: account.password } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: 'bearer', expires_in: 15 * 60 });
    const me = await call(server.url, 'GET', '/users/me', { headers: bearer(String(res.body.access_token)) });
    expect(me.status).toBe(200);
    expect(me.body.id).toBe(account.id);
  });

  it('answers the same 401 for a wrong password and for an unknown email', async () => {
    const account = await register(server.url);
    const wrong = await call(server.url, 'POST', '/auth/login', { body: { email: account.email, password: 'wrong-password' } });
    const unknown = await call(server.url, 'POST', '/auth/login', { body: { email: 'nobody@example.com', password: 'wrong-password' } });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.headers.get('content-type')).toContain('application/problem+json');
    expect(unknown.body).toEqual(wrong.body);
  });

  it('spends a password verification on an unknown email too, as on a wrong password, so timing tells no email apart', async () => {
    const account = await register(server.url);
    // CPU time, not wall time: the server runs in this process, and the CPU a login spends does not grow with the machine's load.
    const cpuMs = async (email: string): Promise<number> => {
      const before = process.cpuUsage();
      const res = await call(server.url, 'POST', '/auth/login', { body: { email, password: 'wrong-password' } });
      const used = process.cpuUsage(before);
      expect(res.status).toBe(401);
      return (used.user + used.system) / 1000;
    };
    let known = 0;
    let unknown = 0;
    for (let i = 0; i < 5; i++) {
      known += await cpuMs(account.email);
      unknown += await cpuMs(`nobody-${i}-${account.username}@example.com`);
    }
    // An argon2id verification (19 MiB, 2 passes) costs several times what the rest of a refused login does:
    // without one, an unknown email costs a tenth to a fifth of a wrong password.
    expect(unknown, JSON.stringify({ known, unknown })).toBeGreaterThan(known / 3);
  });
});

describe('/users/me', () => {
  it('GET without credentials is 401', async () => {
    const res = await call(server.url, 'GET', '/users/me');
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });

  it('PUT changes the username without a password', async () => {
    const account = await register(server.url);
    const { access_token } = await login(server.url, account);
    const name = `${account.username}x`;
    const res = await call(server.url, 'PUT', '/users/me', { headers: bearer(access_token), body: { username: name } });
    expect(res.status).toBe(200);
    expect(res.body.username).toBe(name);
  });

  it('PUT that changes nothing writes nothing: updated_at stays', async () => {
    const account = await register(server.url);
    const headers = bearer((await login(server.url, account)).access_token);
    const before = await call(server.url, 'GET', '/users/me', { headers });
    await new Promise((resolve) => setTimeout(resolve, 5));
    for (const body of [{}, { username: account.username }, { email: String(before.body.email) }]) {
      const res = await call(server.url, 'PUT', '/users/me', { headers, body });
      expect(res.status, JSON.stringify(body)).toBe(200);
      expect(res.body.updated_at, JSON.stringify(body)).toBe(before.body.updated_at);
    }
    expect((await call(server.url, 'GET', '/users/me', { headers })).body.updated_at).toBe(before.body.updated_at);
  });

  it('PUT of email or password without current_password is 422 and changes nothing', async () => {
    const account = await register(server.url);
    const { access_token } = await login(server.url, account);
    for (const body of [{ email: 'new-' + account.email }, { password: 'a-new-password' }]) {
      const res = await call(server.url, 'PUT', '/users/me', { headers: bearer(access_token), body });
      expect(res.status).toBe(422);
      expect(JSON.stringify(res.body.errors)).toContain('current_password');
    }
    await login(server.url, account);
  });

  it('PUT with a wrong current_password is 403 wrong_password', async () => {
    const account = await register(server.url);
    const { access_token } = await login(server.url, account);
    const res = await call(server.url, 'PUT', '/users/me', {
      headers: bearer(access_token),
      body: { password: 'a-new-password', current_password: 'not-my-password' },
    });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('wrong_password');
  });

  it('PUT checks a current_password that is sent even when nothing needs it: wrong is 403 and nothing changes, right is 200', async () => {
    const account = await register(server.url);
    const { access_token } = await login(server.url, account);
    for (const body of [{ current_password: 'not-my-password' }, { username: `n${account.username}`, current_password: 'not-my-password' }]) {
      const res = await call(server.url, 'PUT', '/users/me', { headers: bearer(access_token), body });
      expect(res.status, JSON.stringify(body)).toBe(403);
      expect(res.body.code).toBe('wrong_password');
    }
    expect((await call(server.url, 'GET', '/users/me', { headers: bearer(access_token) })).body.username).toBe(account.username);
    const right = await call(server.url, 'PUT', '/users/me', { headers: bearer(access_token), body: { username: `n${account.username}`, current_password: account.password } });
    expect(right.status).toBe(200);
    expect(right.body.username).toBe(`n${account.username}`);
  });

  it('PUT with the right current_password changes email and password', async () => {
    const account = await register(server.url);
    const { access_token } = await login(server.url, account);
    const email = `new-${account.email}`;
    const res = await call(server.url, 'PUT', '/users/me', {
      headers: bearer(access_token),
      body: { email, password: 'a-new-password', current_password: account.password },
    });
    expect(res.status).toBe(200);
    expect(res.body.email).toBe(email);
    await login(server.url, { ...account, email, password: 'a-new-password' });
    const old = await call(server.url, 'POST', '/auth/login', { body: { email, password: account.password } });
    expect(old.status).toBe(401);
  });

  it('a new password ends every session (each refresh token is 401); a change of username alone ends none', async () => {
    const account = await register(server.url);
    const phone = await login(server.url, account);
    const laptop = await login(server.url, account);
    const renamed = await call(server.url, 'PUT', '/users/me', { headers: bearer(laptop.access_token), body: { username: `r${account.username}`.slice(0, 30) } });
    expect(renamed.status).toBe(200);
    const stillOn = await call<{ refresh_token: string }>(server.url, 'POST', '/auth/refresh', { body: { refresh_token: phone.refresh_token } });
    expect(stillOn.status).toBe(200);
    const changed = await call(server.url, 'PUT', '/users/me', { headers: bearer(laptop.access_token), body: { password: 'another-password-1', current_password: account.password } });
    expect(changed.status).toBe(200);
    for (const token of [stillOn.body.refresh_token, laptop.refresh_token]) {
      const res = await call(server.url, 'POST', '/auth/refresh', { body: { refresh_token: token } });
      expect(res.status).toBe(401);
      expect(res.body.code).toBe('invalid_refresh_token');
    }
  });

  it('a new password ends every credential made before it: access tokens (this request\'s too), sessions and API keys', async () => {
    const account = await register(server.url);
    const laptop = await login(server.url, account);
    const phone = await login(server.url, account);
    const key = await call<{ key: string }>(server.url, 'POST', '/auth/api-keys', { headers: bearer(laptop.access_token), body: { name: 'script' } });
    expect(key.status).toBe(201);
    expect((await call(server.url, 'GET', '/users/me', { headers: { 'x-api-key': key.body.key } })).status).toBe(200);

    const changed = await call(server.url, 'PUT', '/users/me', { headers: bearer(laptop.access_token), body: { password: 'another-password-1', current_password: account.password } });
    expect(changed.status).toBe(200);
    for (const token of [laptop.access_token, phone.access_token]) {
      const res = await call(server.url, 'GET', '/users/me', { headers: bearer(token) });
      expect(res.status).toBe(401);
      expect(res.body.code).toBe('token_revoked');
    }
    // An access token from before cannot make a key that would outlive the change.
    expect((await call(server.url, 'POST', '/auth/api-keys', { headers: bearer(phone.access_token), body: { name: 'late' } })).status).toBe(401);
    const oldKey = await call(server.url, 'GET', '/users/me', { headers: { 'x-api-key': key.body.key } });
    expect(oldKey.status).toBe(401);
    expect(oldKey.body.code).toBe('invalid_api_key');

    // Signing in with the new password starts afresh, with no key of before listed.
    const fresh = await login(server.url, { ...account, password: 'another-password-1' });
    expect((await call(server.url, 'GET', '/users/me', { headers: bearer(fresh.access_token) })).status).toBe(200);
    expect((await call<unknown[]>(server.url, 'GET', '/auth/api-keys', { headers: bearer(fresh.access_token) })).body).toEqual([]);
    const refreshed = await call<{ access_token: string }>(server.url, 'POST', '/auth/refresh', { body: { refresh_token: fresh.refresh_token } });
    expect(refreshed.status).toBe(200);
    expect((await call(server.url, 'GET', '/users/me', { headers: bearer(refreshed.body.access_token) })).status).toBe(200);
  });

  it('changes the password and ends the credentials together: when ending them fails, the old password stays', async () => {
    const account = await register(server.url);
    const pair = await login(server.url, account);
    const key = await call<{ key: string }>(server.url, 'POST', '/auth/api-keys', { headers: bearer(pair.access_token), body: { name: 'script' } });
    // The database refuses to delete keys (as a connection lost between the writes would fail the second).
    await sql`create trigger keep_keys before delete on api_keys begin select raise(abort, 'not now'); end`.execute(server.ctx.db.kysely);
    try {
      const res = await call(server.url, 'PUT', '/users/me', { headers: bearer(pair.access_token), body: { password: 'another-password-1', current_password: account.password } });
      expect(res.status).toBe(500);
    } finally {
      await sql`drop trigger keep_keys`.execute(server.ctx.db.kysely);
    }
    // Nothing of the change was kept: the old password, the old session and the key all still work.
    await login(server.url, account);
    expect((await call(server.url, 'POST', '/auth/login', { body: { email: account.email, password: 'another-password-1' } })).status).toBe(401);
    expect((await call(server.url, 'GET', '/users/me', { headers: bearer(pair.access_token) })).status).toBe(200);
    expect((await call(server.url, 'GET', '/users/me', { headers: { 'x-api-key': key.body.key } })).status).toBe(200);
  });

  it('a change of username or email ends no credential', async () => {
    const account = await register(server.url);
    const pair = await login(server.url, account);
    const key = await call<{ key: string }>(server.url, 'POST', '/auth/api-keys', { headers: bearer(pair.access_token), body: { name: 'script' } });
    const email = `moved-${account.email}`;
    const res = await call(server.url, 'PUT', '/users/me', { headers: bearer(pair.access_token), body: { username: `m${account.username}`.slice(0, 30), email, current_password: account.password } });
    expect(res.status).toBe(200);
    expect((await call(server.url, 'GET', '/users/me', { headers: bearer(pair.access_token) })).status).toBe(200);
    expect((await call(server.url, 'GET', '/users/me', { headers: { 'x-api-key': key.body.key } })).status).toBe(200);
    expect((await call(server.url, 'POST', '/auth/refresh', { body: { refresh_token: pair.refresh_token } })).status).toBe(200);
  });

  it('PUT to an email someone else has, in another case, is 409 email_taken', async () => {
    const other = await register(server.url);
    const account = await register(server.url);
    const { access_token } = await login(server.url, account);
    const res = await call(server.url, 'PUT', '/users/me', {
      headers: bearer(access_token),
      body: { email: other.email.toUpperCase(), current_password: account.password },
    });
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('email_taken');
  });

  it('PUT of one\'s own email in another case is no clash with oneself: 200, the new spelling kept, and it still signs in', async () => {
    const account = await register(server.url);
    const { access_token } = await login(server.url, account);
    const email = account.email.toLowerCase();
    expect(email).not.toBe(account.email);
    const res = await call(server.url, 'PUT', '/users/me', { headers: bearer(access_token), body: { email, current_password: account.password } });
    expect(res.status).toBe(200);
    expect(res.body.email).toBe(email);
    expect((await call(server.url, 'GET', '/users/me', { headers: bearer(access_token) })).body.email).toBe(email);
    await login(server.url, { ...account, email: email.toUpperCase() });
  });

  it('PUT to a taken username is 409 username_taken; a short new password is 422', async () => {
    const other = await register(server.url);
    const account = await register(server.url);
    const { access_token } = await login(server.url, account);
    const taken = await call(server.url, 'PUT', '/users/me', { headers: bearer(access_token), body: { username: other.username } });
    expect(taken.status).toBe(409);
    expect(taken.body.code).toBe('username_taken');
    const short = await call(server.url, 'PUT', '/users/me', {
      headers: bearer(access_token),
      body: { password: 'short', current_password: account.password },
    });
    expect(short.status).toBe(422);
  });

  it('DELETE removes the account, its sessions and its keys', async () => {
    const account = await register(server.url);
    const pair = await login(server.url, account);
    const key = await call(server.url, 'POST', '/auth/api-keys', { headers: bearer(pair.access_token), body: { name: 'ci' } });
    expect(key.status).toBe(201);

    const res = await call(server.url, 'DELETE', '/users/me', { headers: bearer(pair.access_token) });
    expect(res.status).toBe(204);

    const db = server.ctx.db.kysely;
    expect(await db.selectFrom('users').select('id').where('id', '=', account.id).executeTakeFirst()).toBeUndefined();
    expect(await db.selectFrom('refresh_tokens').select('id').where('user_id', '=', account.id).execute()).toEqual([]);
    expect(await db.selectFrom('api_keys').select('id').where('user_id', '=', account.id).execute()).toEqual([]);
    expect((await call(server.url, 'GET', '/users/me', { headers: bearer(pair.access_token) })).status).toBe(401);
    expect((await call(server.url, 'GET', '/users/me', { headers: { 'x-api-key': String(key.body.key) } })).status).toBe(401);
    expect((await call(server.url, 'POST', '/auth/refresh', { body: { refresh_token: pair.refresh_token } })).status).toBe(401);
    expect((await call(server.url, 'POST', '/auth/login', { body: { email: account.email, password: account.password } })).status).toBe(401);
  });
});

describe('OpenAPI', () => {
  it('documents every account route with a tag and a summary', async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { tags?: string[]; summary?: string }>>;
    };
    const expected: Array<[string, string]> = [
      ['/auth/register', 'post'],
      ['/auth/login', 'post'],
      ['/auth/refresh', 'post'],
      ['/auth/logout', 'post'],
      ['/users/me', 'get'],
      ['/users/me', 'put'],
      ['/users/me', 'delete'],
      ['/auth/api-keys', 'post'],
      ['/auth/api-keys', 'get'],
      ['/auth/api-keys/{id}', 'delete'],
      ['/admin/users', 'get'],
      ['/admin/users/{id}', 'patch'],
    ];
    for (const [path, method] of expected) {
      const op = doc.paths[path]?.[method];
      expect(op, `${method} ${path}`).toBeDefined();
      expect(op?.tags?.length).toBeGreaterThan(0);
      expect(op?.summary).toBeTruthy();
    }
  });
});
