import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../../src/clock.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { bearer, call, login, register, TestClock, type Pair } from '../../auth/helpers.js';

let server: TestServer;
const clock = new TestClock();

beforeAll(async () => {
  server = await startServer({}, { clock });
});
afterAll(async () => server.close());

const refresh = (token: string) => call<Pair>(server.url, 'POST', '/auth/refresh', { body: { refresh_token: token } });
const me = (token: string) => call(server.url, 'GET', '/users/me', { headers: bearer(token) });

describe('refresh tokens', () => {
  it('are opaque and stored only as a hash', async () => {
    const pair = await login(server.url, await register(server.url));
    expect(pair.refresh_token.split('.').length).toBe(1);
    const rows = await server.ctx.db.kysely.selectFrom('refresh_tokens').selectAll().execute();
    expect(JSON.stringify(rows)).not.toContain(pair.refresh_token);
  });

  it('rotate: a refresh gives a new working pair and the old refresh token stops working', async () => {
    const first = await login(server.url, await register(server.url));
    const second = await refresh(first.refresh_token);
    expect(second.status).toBe(200);
    expect(second.body.token_type).toBe('bearer');
    expect(second.body.refresh_token).not.toBe(first.refresh_token);
    expect((await me(second.body.access_token)).status).toBe(200);
    const third = await refresh(second.body.refresh_token);
    expect(third.status).toBe(200);
  });

  it('no cache may keep an answer that carries tokens (Cache-Control: no-store)', async () => {
    const account = await register(server.url);
    const signIn = await call<Pair>(server.url, 'POST', '/auth/login', { body: { email: account.email, password: account.password } });
    expect(signIn.status).toBe(200);
    expect(signIn.headers.get('cache-control')).toBe('no-store');
    const next = await refresh(signIn.body.refresh_token);
    expect(next.status).toBe(200);
    expect(next.headers.get('cache-control')).toBe('no-store');
  });

  it('reusing a used refresh token revokes the whole session family (401)', async () => {
    const first = await login(server.url, await register(server.url));
    const second = await refresh(first.refresh_token);
    expect(second.status).toBe(200);

    const replay = await refresh(first.refresh_token);
    expect(replay.status).toBe(401);
    expect(replay.headers.get('content-type')).toContain('application/problem+json');
    // The thief's replay also kills the legitimate holder's newer token.
    expect((await refresh(second.body.refresh_token)).status).toBe(401);
  });

  it('reuse revokes only that session, not another login of the same user', async () => {
    const account = await register(server.url);
    const a = await login(server.url, account);
    const b = await login(server.url, account);
    await refresh(a.refresh_token);
    await refresh(a.refresh_token);
    expect((await refresh(b.refresh_token)).status).toBe(200);
  });

  it('an unknown refresh token is 401', async () => {
    expect((await refresh('not-a-token')).status).toBe(401);
  });

  it('logout answers 204 and kills the refresh token', async () => {
    const pair = await login(server.url, await register(server.url));
    const res = await call(server.url, 'POST', '/auth/logout', { body: { refresh_token: pair.refresh_token }, headers: bearer(pair.access_token) });
    expect(res.status).toBe(204);
    expect((await refresh(pair.refresh_token)).status).toBe(401);
  });

  it('logout works without a bearer token too', async () => {
    const pair = await login(server.url, await register(server.url));
    expect((await call(server.url, 'POST', '/auth/logout', { body: { refresh_token: pair.refresh_token } })).status).toBe(204);
    expect((await refresh(pair.refresh_token)).status).toBe(401);
  });

  it('logout works when the bearer token sent with it has expired or does not verify', async () => {
    const account = await register(server.url);
    const stale = await login(server.url, account);
    const forged = await login(server.url, account);
    clock.advanceMinutes(16);
    expect((await me(stale.access_token)).status).toBe(401);
    const res = await call(server.url, 'POST', '/auth/logout', { body: { refresh_token: stale.refresh_token }, headers: bearer(stale.access_token) });
    expect(res.status).toBe(204);
    expect((await refresh(stale.refresh_token)).status).toBe(401);

    const garbage = await call(server.url, 'POST', '/auth/logout', { body: { refresh_token: forged.refresh_token }, headers: bearer('not.a.jwt') });
    expect(garbage.status).toBe(204);
    expect((await refresh(forged.refresh_token)).status).toBe(401);

    // Any other credential beside the refresh token is ignored too: a bad API key, another Authorization scheme.
    const others: Array<Record<string, string>> = [{ 'x-api-key': 'kiln_not_a_key' }, { authorization: 'Basic dXNlcjpwYXNz' }];
    for (const headers of others) {
      const other = await login(server.url, account);
      expect((await call(server.url, 'POST', '/auth/logout', { body: { refresh_token: other.refresh_token }, headers })).status).toBe(204);
      expect((await refresh(other.refresh_token)).status).toBe(401);
    }
  });

  it('refresh, login and register work when a bearer token sent with them has expired or does not verify', async () => {
    const account = await register(server.url);
    const stale = await login(server.url, account);
    clock.advanceMinutes(16);
    expect((await me(stale.access_token)).status).toBe(401);
    for (const headers of [bearer(stale.access_token), bearer('not.a.jwt'), { 'x-api-key': 'kiln_not_a_key' }]) {
      const current = await login(server.url, account);
      const refreshed = await call(server.url, 'POST', '/auth/refresh', { body: { refresh_token: current.refresh_token }, headers });
      expect(refreshed.status, JSON.stringify(headers)).toBe(200);
      const relogged = await call(server.url, 'POST', '/auth/login', { body: { email: account.email, password: account.password }, headers });
      expect(relogged.status, JSON.stringify(headers)).toBe(200);
      const name = `n${Math.random().toString(36).slice(2, 10)}`;
      const registered = await call(server.url, 'POST', '/auth/register', { body: { email: `${name}@example.com`, username: name, password: 'long-enough-password' }, headers });
      expect(registered.status, JSON.stringify(headers)).toBe(201);
    }
    // The body's credential still decides: a used refresh token stays refused.
    const used = await login(server.url, account);
    expect((await refresh(used.refresh_token)).status).toBe(200);
    expect((await call(server.url, 'POST', '/auth/refresh', { body: { refresh_token: used.refresh_token }, headers: bearer(stale.access_token) })).status).toBe(401);
  });

  it('logout with an unknown refresh token answers 204', async () => {
    for (const token of ['not-a-token', 'A'.repeat(43)]) {
      const res = await call(server.url, 'POST', '/auth/logout', { body: { refresh_token: token } });
      expect(res.status, token).toBe(204);
    }
  });

  it('logout with an earlier, already rotated token of a session ends the session: its current token is 401', async () => {
    const first = await login(server.url, await register(server.url));
    const second = await refresh(first.refresh_token);
    expect(second.status).toBe(200);
    expect((await call(server.url, 'POST', '/auth/logout', { body: { refresh_token: first.refresh_token } })).status).toBe(204);
    const after = await refresh(second.body.refresh_token);
    expect(after.status).toBe(401);
    expect(after.body).toMatchObject({ code: 'invalid_refresh_token' });
  });

  it('every other route still refuses a bearer token that does not verify', async () => {
    const res = await call(server.url, 'GET', '/', { headers: bearer('not.a.jwt') });
    expect(res.status).toBe(401);
  });
});

describe('lifetimes (moved by an injected clock)', () => {
  it('the access token lasts ACCESS_TOKEN_LIFETIME minutes', async () => {
    const pair = await login(server.url, await register(server.url));
    expect(pair.expires_in).toBe(15 * 60);
    clock.advanceMinutes(14);
    expect((await me(pair.access_token)).status).toBe(200);
    clock.advanceMinutes(2);
    const expired = await me(pair.access_token);
    expect(expired.status).toBe(401);
    expect(expired.body.code).toBe('token_expired');
  });

  it('without remember_me the refresh token lasts 60 minutes', async () => {
    const account = await register(server.url);
    const alive = await login(server.url, account);
    const dead = await login(server.url, account);
    clock.advanceMinutes(59);
    expect((await refresh(alive.refresh_token)).status).toBe(200);
    clock.advanceMinutes(2);
    expect((await refresh(dead.refresh_token)).status).toBe(401);
  });

  it('without remember_me the successor of a refresh token lasts 60 minutes too, counted from the refresh', async () => {
    const account = await register(server.url);
    const kept = await refresh((await login(server.url, account)).refresh_token);
    const idle = await refresh((await login(server.url, account)).refresh_token);
    expect(kept.status).toBe(200);
    expect(idle.status).toBe(200);
    clock.advanceMinutes(59);
    expect((await refresh(kept.body.refresh_token)).status).toBe(200);
    clock.advanceMinutes(2);
    const expired = await refresh(idle.body.refresh_token);
    expect(expired.status).toBe(401);
    expect(expired.body).toMatchObject({ code: 'invalid_refresh_token' });
  });

  it('with remember_me the refresh token lasts 30 days, and so does its successor', async () => {
    const account = await register(server.url);
    const long = await login(server.url, account, true);
    clock.advanceMinutes(24 * 60 * 29);
    const next = await refresh(long.refresh_token);
    expect(next.status).toBe(200);
    clock.advanceMinutes(24 * 60 * 29);
    expect((await refresh(next.body.refresh_token)).status).toBe(200);

    const other = await login(server.url, account, true);
    clock.advanceMinutes(24 * 60 * 30 + 1);
    expect((await refresh(other.refresh_token)).status).toBe(401);
  });
});

/** A clock that stands still until a test sets it: lifetimes checked to the millisecond. */
class StoppedClock implements Clock {
  private at = Date.now();
  now(): Date {
    return new Date(this.at);
  }
  set(at: number): void {
    this.at = at;
  }
}

describe('a refresh token expires exactly at the end of its lifetime', () => {
  let stopped: TestServer;
  const stoppedClock = new StoppedClock();
  beforeAll(async () => {
    stopped = await startServer({}, { clock: stoppedClock });
  });
  afterAll(async () => stopped.close());
  const refreshOn = (token: string) => call<Pair>(stopped.url, 'POST', '/auth/refresh', { body: { refresh_token: token } });

  it('works at 59:59 and is 401 at 60:00', async () => {
    const start = Date.now();
    stoppedClock.set(start);
    const account = await register(stopped.url);
    const early = await login(stopped.url, account);
    const late = await login(stopped.url, account);
    stoppedClock.set(start + 59 * 60_000 + 59_000);
    expect((await refreshOn(early.refresh_token)).status).toBe(200);
    stoppedClock.set(start + 60 * 60_000);
    const expired = await refreshOn(late.refresh_token);
    expect(expired.status).toBe(401);
    expect(expired.body).toMatchObject({ code: 'invalid_refresh_token' });
  });
});

describe('lifetimes follow their settings', () => {
  let custom: TestServer;
  const customClock = new TestClock();
  beforeAll(async () => {
    custom = await startServer({ ACCESS_TOKEN_LIFETIME: '3', SHORT_REFRESH_TOKEN_LIFETIME: '10', LONG_REFRESH_TOKEN_LIFETIME: '120' }, { clock: customClock });
  });
  afterAll(async () => custom.close());
  const refreshOn = (token: string) => call<Pair>(custom.url, 'POST', '/auth/refresh', { body: { refresh_token: token } });

  it('ACCESS_TOKEN_LIFETIME sets expires_in and when the token stops working', async () => {
    const pair = await login(custom.url, await register(custom.url));
    expect(pair.expires_in).toBe(3 * 60);
    customClock.advanceMinutes(2);
    expect((await call(custom.url, 'GET', '/users/me', { headers: bearer(pair.access_token) })).status).toBe(200);
    customClock.advanceMinutes(2);
    expect((await call(custom.url, 'GET', '/users/me', { headers: bearer(pair.access_token) })).status).toBe(401);
  });

  it('SHORT_ and LONG_REFRESH_TOKEN_LIFETIME set how long each kind of refresh token lasts', async () => {
    const account = await register(custom.url);
    const short = [await login(custom.url, account), await login(custom.url, account)];
    const long = [await login(custom.url, account, true), await login(custom.url, account, true)];
    customClock.advanceMinutes(9);
    expect((await refreshOn(short[0]!.refresh_token)).status).toBe(200);
    customClock.advanceMinutes(2);
    expect((await refreshOn(short[1]!.refresh_token)).status).toBe(401);
    customClock.advanceMinutes(108);
    expect((await refreshOn(long[0]!.refresh_token)).status).toBe(200);
    customClock.advanceMinutes(2);
    expect((await refreshOn(long[1]!.refresh_token)).status).toBe(401);
  });
});

describe('a deactivated user', () => {
  it('cannot log in, and its access tokens, refresh tokens and API keys stop at once', async () => {
    const account = await register(server.url);
    const pair = await login(server.url, account);
    const key = await call(server.url, 'POST', '/auth/api-keys', { headers: bearer(pair.access_token), body: { name: 'k' } });
    expect(key.status).toBe(201);
    const apiKey = { 'x-api-key': String(key.body.key) };
    expect((await call(server.url, 'GET', '/users/me', { headers: apiKey })).status).toBe(200);

    await server.ctx.db.kysely.updateTable('users').set({ is_active: 0 }).where('id', '=', account.id).execute();

    expect((await me(pair.access_token)).status).toBe(401);
    expect((await call(server.url, 'GET', '/users/me', { headers: apiKey })).status).toBe(401);
    expect((await refresh(pair.refresh_token)).status).toBe(401);
    const again = await call(server.url, 'POST', '/auth/login', { body: { email: account.email, password: account.password } });
    expect(again.status).toBe(401);
  });

  it('with a wrong password is told invalid_credentials; account_inactive only after the right one', async () => {
    const account = await register(server.url);
    await server.ctx.db.kysely.updateTable('users').set({ is_active: 0 }).where('id', '=', account.id).execute();
    const wrong = await call(server.url, 'POST', '/auth/login', { body: { email: account.email, password: 'wrong-password' } });
    expect(wrong.status).toBe(401);
    expect(wrong.body.code).toBe('invalid_credentials');
    const right = await call(server.url, 'POST', '/auth/login', { body: { email: account.email, password: account.password } });
    expect(right.status).toBe(401);
    expect(right.body.code).toBe('account_inactive');
  });
});
