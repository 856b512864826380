import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLogLines } from '../helpers/logs.js';
import { expectProblem } from '../helpers/problem.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { fixture, postMultipart } from '../helpers/upload.js';
import { bearer, call, login, register, TestClock, type Account } from './helpers.js';

const CAT = fixture('chelsea_cat_small_451x300.png');
const SHARED_SECRET = 'shared-secret-between-kiln-and-the-auth-service';
const secretKey = new TextEncoder().encode(SHARED_SECRET);

let jwks: Server;
let jwksUrl: string;
/** Requests the JWKS server has answered. */
let jwksRequests = 0;
const clock = new TestClock();
let server: TestServer;
let account: Account;
let rsa: { privateKey: CryptoKey; jwk: JWK };
let ec: { privateKey: CryptoKey; jwk: JWK };

async function keyPair(alg: 'RS256' | 'ES256', kid: string) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

beforeAll(async () => {
  rsa = await keyPair('RS256', 'rsa-1');
  ec = await keyPair('ES256', 'ec-1');
  // The external issuer's key set, served the way an identity provider serves it.
  jwks = createServer((_req, res) => {
    jwksRequests++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [rsa.jwk, ec.jwk] }));
  });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  const { port } = jwks.address() as AddressInfo;
  jwksUrl = `http://127.0.0.1:${port}/.well-known/jwks.json`;
  // The JWKS fetch goes through the outbound guard: a loopback issuer must be allowed.
  server = await startServer({ JWT_SECRET: SHARED_SECRET, JWT_JWKS_URL: jwksUrl, FETCH_ALLOWED_HOSTS: '127.0.0.1' }, { clock });
  account = await register(server.url);
});
afterAll(async () => {
  await server.close();
  await new Promise((resolve) => jwks.close(resolve));
});

const now = () => Math.floor(Date.now() / 1000);
/** Kiln's own idea of now, in seconds: the clock it was given. */
const kilnNow = () => Math.floor(clock.now().getTime() / 1000);
const me = (token: string) => call(server.url, 'GET', '/users/me', { headers: bearer(token) });
const meRaw = (baseUrl: string, token: string) => fetch(`${baseUrl}/users/me`, { headers: bearer(token) });

function claims(sub: string) {
  return new SignJWT({ role: 'customer' }).setSubject(sub).setIssuedAt().setExpirationTime('10m');
}

function b64(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe("Kiln's own access token", () => {
  it('is an HS256 JWT signed with JWT_SECRET whose sub is the user id, issued by kiln, living ACCESS_TOKEN_LIFETIME (15 minutes)', async () => {
    const issued = await login(server.url, account);
    const token = issued.access_token;
    expect(decodeProtectedHeader(token).alg).toBe('HS256');
    const payload = decodeJwt(token);
    expect(payload).toMatchObject({ sub: account.id, iss: 'kiln' });
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(15 * 60);
    expect(issued.expires_in).toBe(15 * 60);
    // Signed with the shared secret: another service holding it can verify Kiln's tokens too.
    await expect(jwtVerify(token, secretKey, { algorithms: ['HS256'], currentDate: clock.now() })).resolves.toMatchObject({ payload: { sub: account.id } });
  });
});

describe('tokens from another service', () => {
  it('HS256 signed with the shared JWT_SECRET is accepted', async () => {
    const token = await claims(account.id).setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
    const res = await me(token);
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(account.id);
  });

  it('RS256 and ES256 verified with the JWKS endpoint are accepted', async () => {
    const rs = await claims(account.id).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
    const es = await claims(account.id).setProtectedHeader({ alg: 'ES256', kid: 'ec-1' }).sign(ec.privateKey);
    expect((await me(rs)).status).toBe(200);
    expect((await me(es)).status).toBe(200);
  });

  it('alg "none" is 401', async () => {
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: account.id, exp: now() + 600 })}.`;
    const res = await me(token);
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });

  it('a token signed with another key is 401 (HS256 and RS256)', async () => {
    const hs = await claims(account.id).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('some-other-secret-entirely'));
    expect((await me(hs)).status).toBe(401);
    const stranger = await keyPair('RS256', 'rsa-1');
    const rs = await claims(account.id).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(stranger.privateKey);
    expect((await me(rs)).status).toBe(401);
  });

  it('an expired token is 401', async () => {
    const token = await new SignJWT({}).setSubject(account.id).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now() - 7200).setExpirationTime(now() - 3600).sign(secretKey);
    expect((await me(token)).status).toBe(401);
  });

  it('a token with no exp is 401, from the shared secret and from the JWKS alike', async () => {
    const hs = await new SignJWT({}).setSubject(account.id).setIssuedAt().setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
    const rs = await new SignJWT({}).setSubject(account.id).setIssuedAt().setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
    for (const token of [hs, rs]) {
      const res = await me(token);
      expect(res.status).toBe(401);
      expect(res.body.code).toBe('invalid_token');
    }
  });

  it('a token with a future nbf is 401', async () => {
    const token = await claims(account.id).setProtectedHeader({ alg: 'HS256' }).setNotBefore(now() + 3600).sign(secretKey);
    expect((await me(token)).status).toBe(401);
  });

  it('expiry is exact: a token expired a few seconds ago (by Kiln\'s clock) is 401 token_expired, HS256 and RS256', async () => {
    const t = kilnNow();
    const hs = await new SignJWT({}).setSubject(account.id).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(t - 600).setExpirationTime(t - 3).sign(secretKey);
    const rs = await new SignJWT({}).setSubject(account.id).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).setIssuedAt(t - 600).setExpirationTime(t - 3).sign(rsa.privateKey);
    for (const token of [hs, rs]) await expectProblem(await meRaw(server.url, token), 401, 'token_expired');
    // The same token with its exp still ahead works: the 401 above is the expiry, not something else.
    // (Ten minutes ahead: Kiln's clock follows real time, and signing and the calls above take some of it.)
    const fresh = await new SignJWT({}).setSubject(account.id).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(t - 600).setExpirationTime(t + 600).sign(secretKey);
    expect((await me(fresh)).status).toBe(200);
  });

  it('nbf is exact: a token valid from twenty seconds from now is 401 (HS256 and RS256)', async () => {
    const t = kilnNow();
    // 20 s: within a clock tolerance of 30 s these would pass, and Kiln's clock (which follows real time)
    // has room for the signing, the JWKS fetch and the calls before it reaches nbf.
    const hs = await claims(account.id).setProtectedHeader({ alg: 'HS256' }).setNotBefore(t + 20).sign(secretKey);
    const rs = await claims(account.id).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).setNotBefore(t + 20).sign(rsa.privateKey);
    for (const token of [hs, rs]) await expectProblem(await meRaw(server.url, token), 401);
    const started = await claims(account.id).setProtectedHeader({ alg: 'HS256' }).setNotBefore(t - 5).sign(secretKey);
    expect((await me(started)).status).toBe(200);
  });


  it('HS256 with the public key as secret (algorithm confusion) is 401', async () => {
    const pem = new TextEncoder().encode(JSON.stringify(rsa.jwk));
    const token = await claims(account.id).setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(pem);
    expect((await me(token)).status).toBe(401);
  });
});

describe("another service's user with no Kiln account", () => {
  const upload = (project: string, token: string) =>
    postMultipart(`${server.url}/projects/${project}/images`, [{ field: 'file', filename: 'cat.png', data: CAT, type: 'image/png' }], bearer(token));
  const remove = (project: string, imageId: string, token: string) =>
    fetch(`${server.url}/projects/${project}/images/${imageId}`, { method: 'DELETE', headers: bearer(token) });

  it('acts as its `sub` and owns what it uploads (HS256 and RS256), and no one else may delete it', async () => {
    const alice = `auth-service|${randomUUID()}`;
    const hs = await claims(alice).setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
    const rs = await claims(alice).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
    const project = `ext-${randomUUID().slice(0, 8)}`;
    const first = await upload(project, hs);
    expect(first.status).toBe(201);
    const { image_id: imageId } = (await first.json()) as { image_id: string };
    // The same subject from the JWKS issuer is the same owner.
    expect((await upload(project, rs)).status).toBe(201);

    // Another subject of the same issuer is someone else: the project is not theirs.
    const bob = await claims(`auth-service|${randomUUID()}`).setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
    expect((await upload(project, bob)).status).toBe(404);
    expect((await remove(project, imageId, bob)).status).toBe(404);
    // Nor is it a Kiln user's whose id differs.
    expect((await remove(project, imageId, (await login(server.url, account)).access_token)).status).toBe(404);

    expect((await remove(project, imageId, rs)).status).toBe(204);
    const listing = (await (await fetch(`${server.url}/projects/${project}/images`)).json()) as { images: unknown[] };
    expect(listing.images).toHaveLength(1);
  });

  it('has no account: /users/me is 404 no_account, API keys 403 no_account, admin routes 403', async () => {
    const token = await claims(`auth-service|${randomUUID()}`).setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
    await expectProblem(await meRaw(server.url, token), 404, 'no_account');
    const update = await fetch(`${server.url}/users/me`, { method: 'PUT', headers: { ...bearer(token), 'content-type': 'application/json' }, body: JSON.stringify({ username: 'renamed' }) });
    await expectProblem(update, 404, 'no_account');
    const key = await fetch(`${server.url}/auth/api-keys`, { method: 'POST', headers: { ...bearer(token), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'ci' }) });
    await expectProblem(key, 403, 'no_account');
    await expectProblem(await fetch(`${server.url}/auth/api-keys`, { headers: bearer(token) }), 403, 'no_account');
    await expectProblem(await fetch(`${server.url}/admin/users`, { headers: bearer(token) }), 403, 'admin_required');
    expect(await server.ctx.db.kysely.selectFrom('users').select('id').where('id', 'like', 'auth-service|%').execute()).toEqual([]);
  });

  it("a subject that cannot be an owner id is 401: the static key's id, a space or control character, over 255 characters", async () => {
    for (const sub of ['service', 'two words', 'tab\there', 'x'.repeat(256), 'café']) {
      const token = await claims(sub).setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
      await expectProblem(await meRaw(server.url, token), 401, 'invalid_token');
    }
    // 255 printable characters are an owner id like any other.
    const longest = await claims('x'.repeat(255)).setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
    await expectProblem(await meRaw(server.url, longest), 404, 'no_account');
  });

  it("a token naming a deactivated Kiln account is 401, from another issuer as from Kiln", async () => {
    const user = await register(server.url);
    const own = (await login(server.url, user)).access_token;
    const external = await claims(user.id).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
    expect((await me(external)).status).toBe(200);
    await server.ctx.db.kysely.updateTable('users').set({ is_active: 0 }).where('id', '=', user.id).execute();
    for (const token of [own, external]) await expectProblem(await meRaw(server.url, token), 401, 'invalid_token');
  });

  it("Kiln's own token for a deleted account is 401 everywhere, not taken for another service's user", async () => {
    const user = await register(server.url);
    const token = (await login(server.url, user)).access_token;
    expect(decodeJwt(token).iss).toBe('kiln');
    expect((await call(server.url, 'DELETE', '/users/me', { headers: bearer(token) })).status).toBe(204);
    await expectProblem(await meRaw(server.url, token), 401, 'invalid_token');
    await expectProblem(await upload(`gone-${randomUUID().slice(0, 8)}`, token), 401, 'invalid_token');
    // Another issuer's token calling itself "kiln" is still another issuer's (Kiln signs only HS256).
    const mimic = await claims(`auth-service|${randomUUID()}`).setIssuer('kiln').setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
    await expectProblem(await meRaw(server.url, mimic), 404, 'no_account');
  });
});

describe("Kiln's own access token", () => {
  let own: TestServer;
  const ownClock = new TestClock();
  beforeAll(async () => {
    own = await startServer({ ACCESS_TOKEN_LIFETIME: '1' }, { clock: ownClock });
  });
  afterAll(async () => own.close());

  it('works until ACCESS_TOKEN_LIFETIME and is 401 token_expired just after', async () => {
    const pair = await login(own.url, await register(own.url));
    expect(pair.expires_in).toBe(60);
    // Half-way through its 60 s it works; 61 s on (plus whatever real time passed) it has expired.
    ownClock.advanceSeconds(30);
    expect((await meRaw(own.url, pair.access_token)).status).toBe(200);
    ownClock.advanceSeconds(31);
    await expectProblem(await meRaw(own.url, pair.access_token), 401, 'token_expired');
  });
});

describe("Kiln's own access token and the account's credentials epoch", () => {
  it('carries the epoch it was issued in; one from before epochs (no claim) works until the account ends its credentials', async () => {
    const user = await register(server.url);
    const issued = await login(server.url, user);
    expect(decodeJwt(issued.access_token).kiln_epoch).toBe(0);
    // A token as Kiln signed them before it carried the epoch.
    const older = await new SignJWT({}).setSubject(user.id).setIssuer('kiln').setIssuedAt(kilnNow()).setExpirationTime(kilnNow() + 600).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(secretKey);
    expect((await me(older)).status).toBe(200);
    // A forged epoch is no use without the secret, and a wrong-typed one is refused.
    const odd = await new SignJWT({ kiln_epoch: '0' }).setSubject(user.id).setIssuer('kiln').setIssuedAt(kilnNow()).setExpirationTime(kilnNow() + 600).setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
    await expectProblem(await meRaw(server.url, odd), 401, 'invalid_token');

    expect((await call(server.url, 'PUT', '/users/me', { headers: bearer(issued.access_token), body: { password: 'another-password-1', current_password: user.password } })).status).toBe(200);
    for (const token of [older, issued.access_token]) await expectProblem(await meRaw(server.url, token), 401, 'token_revoked');
    const next = await login(server.url, { ...user, password: 'another-password-1' });
    expect(decodeJwt(next.access_token).kiln_epoch).toBe(1);
    expect((await me(next.access_token)).status).toBe(200);
  });

  it("does not apply to another service's token naming a Kiln user: that service's tokens are its own to end", async () => {
    const user = await register(server.url);
    const pair = await login(server.url, user);
    expect((await call(server.url, 'PUT', '/users/me', { headers: bearer(pair.access_token), body: { password: 'another-password-1', current_password: user.password } })).status).toBe(200);
    const external = await claims(user.id).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
    expect((await me(external)).status).toBe(200);
  });
});

describe('a token as versions before the `iss` claim signed them (no iss, no epoch), on a server whose key Kiln generated', () => {
  let own: TestServer;
  let key: Uint8Array;
  /** Signed as Kiln signed its tokens before `iss` and `kiln_epoch`: sub, iat, exp. */
  const older = (sub: string) =>
    new SignJWT({}).setSubject(sub).setIssuedAt(now()).setExpirationTime(now() + 600).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key);
  beforeAll(async () => {
    own = await startServer({});
    key = new TextEncoder().encode(readFileSync(path.join(own.dataDir, 'secrets', 'jwt_secret'), 'utf8').trim());
  });
  afterAll(async () => own.close());

  it('is Kiln\'s own (no other service holds the key): a new password ends it, and so does deleting the account', async () => {
    const user = await register(own.url);
    const token = await older(user.id);
    expect((await meRaw(own.url, token)).status).toBe(200);
    const pair = await login(own.url, user);
    expect((await call(own.url, 'PUT', '/users/me', { headers: bearer(pair.access_token), body: { password: 'another-password-1', current_password: user.password } })).status).toBe(200);
    await expectProblem(await meRaw(own.url, token), 401, 'token_revoked');
    // Nor can it mint a key that would outlive it.
    await expectProblem(await fetch(`${own.url}/auth/api-keys`, { method: 'POST', headers: { ...bearer(token), 'content-type': 'application/json' }, body: '{"name":"k"}' }), 401, 'token_revoked');

    const gone = await register(own.url);
    const goneToken = await older(gone.id);
    expect((await call(own.url, 'DELETE', '/users/me', { headers: bearer(goneToken) })).status).toBe(204);
    await expectProblem(await meRaw(own.url, goneToken), 401, 'invalid_token');
    // Not another service's user either: a subject no account has is refused.
    await expectProblem(await meRaw(own.url, await older(`auth-service|${randomUUID()}`)), 401, 'invalid_token');
  });
});

describe("another service's token is an access token, from JWT_ISSUER for JWT_AUDIENCE when they are set", () => {
  it('is 401 when it says it is a refresh token, under any of the usual claims', async () => {
    for (const [claim, kind] of [['type', 'refresh'], ['typ', 'Refresh'], ['token_type', 'refresh_token'], ['token_use', 'refresh']] as const) {
      const token = await claims(`auth-service|${randomUUID()}`).setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
      const refresh = await new SignJWT({ ...decodeJwt(token), [claim]: kind }).setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
      await expectProblem(await meRaw(server.url, refresh), 401, 'invalid_token');
    }
    // An access token of the same service, saying so, is taken.
    const access = await new SignJWT({ type: 'access' }).setSubject(account.id).setIssuedAt().setExpirationTime('10m').setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
    expect((await me(access)).status).toBe(200);
  });

  describe('with JWT_ISSUER and JWT_AUDIENCE', () => {
    let bound: TestServer;
    let user: Account;
    beforeAll(async () => {
      bound = await startServer({
        JWT_SECRET: SHARED_SECRET,
        JWT_JWKS_URL: jwksUrl,
        FETCH_ALLOWED_HOSTS: '127.0.0.1',
        JWT_ISSUER: 'https://auth.example',
        JWT_AUDIENCE: 'kiln-shop',
      });
      user = await register(bound.url);
    });
    afterAll(async () => bound.close());

    it('takes a token from that issuer for that audience (aud a string or a list), by either key', async () => {
      for (const aud of ['kiln-shop', ['other-app', 'kiln-shop']]) {
        const hs = await claims(user.id).setIssuer('https://auth.example').setAudience(aud).setProtectedHeader({ alg: 'HS256' }).sign(secretKey);
        const rs = await claims(user.id).setIssuer('https://auth.example').setAudience(aud).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
        for (const token of [hs, rs]) expect((await meRaw(bound.url, token)).status, JSON.stringify(aud)).toBe(200);
      }
    });

    it('is 401 for another issuer, no issuer, another audience or no audience', async () => {
      const made = [
        claims(user.id).setIssuer('https://evil.example').setAudience('kiln-shop'),
        claims(user.id).setAudience('kiln-shop'),
        claims(user.id).setIssuer('https://auth.example').setAudience('some-other-app'),
        claims(user.id).setIssuer('https://auth.example'),
      ];
      for (const jwt of made) {
        const token = await jwt.setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
        await expectProblem(await meRaw(bound.url, token), 401, 'invalid_token');
      }
    });

    it("leaves Kiln's own tokens alone: they carry neither", async () => {
      const own = (await login(bound.url, user)).access_token;
      expect(decodeJwt(own)).not.toHaveProperty('aud');
      expect((await meRaw(bound.url, own)).status).toBe(200);
    });
  });
});

describe('the JWKS fetch goes through the outbound guard', () => {
  it('without FETCH_ALLOWED_HOSTS a JWKS on 127.0.0.1 is not fetched: RS256 tokens are 401, and the warning says why', async () => {
    const logDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-jwks-log-'));
    const guarded = await startServer({ JWT_JWKS_URL: jwksUrl, LOG_FILE: path.join(logDir, 'kiln.log'), LOG_LEVEL: 'warn' });
    let closed = false;
    try {
      const user = await register(guarded.url);
      const before = jwksRequests;
      const token = await claims(user.id).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
      await expectProblem(await meRaw(guarded.url, token), 401, 'invalid_token');
      expect(jwksRequests).toBe(before);
      // pino writes through a worker thread: only after close is every line on disk.
      await guarded.close();
      closed = true;
      // The operator learns why: the guard's refusal of the address, not just a failed verification.
      const warnings = readLogLines<{ msg: string; level: number; err?: { code?: string; message?: string } }>(logDir).filter(
        (l) => l.msg === 'could not verify an external token',
      );
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ level: 40, err: { code: 'blocked_address' } });
      expect(warnings[0]?.err?.message).toContain('127.0.0.1 is not a public address');
    } finally {
      if (!closed) await guarded.close();
      rmSync(logDir, { recursive: true, force: true });
    }
  });
});

describe('the JWKS fetch follows no redirect', () => {
  it('a JWKS_URL that redirects to a valid key set is not followed: RS256 tokens are 401', async () => {
    const redirector = createServer((_req, res) => {
      res.statusCode = 302;
      res.setHeader('location', jwksUrl);
      res.end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    const { port } = redirector.address() as AddressInfo;
    const redirected = await startServer({ JWT_JWKS_URL: `http://127.0.0.1:${port}/jwks.json`, FETCH_ALLOWED_HOSTS: '127.0.0.1' });
    try {
      const user = await register(redirected.url);
      const before = jwksRequests;
      const token = await claims(user.id).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
      await expectProblem(await meRaw(redirected.url, token), 401, 'invalid_token');
      // The key set the redirect points to was never asked for.
      expect(jwksRequests).toBe(before);
    } finally {
      await redirected.close();
      await new Promise((resolve) => redirector.close(resolve));
    }
  });
});

describe('presented but bad credentials', () => {
  it('a valid token under any Authorization scheme but Bearer is 401', async () => {
    const { access_token: token } = await login(server.url, account);
    expect((await me(token)).status).toBe(200);
    for (const authorization of [`Token ${token}`, `JWT ${token}`, `Bearer: ${token}`]) {
      const res = await call(server.url, 'GET', '/users/me', { headers: { authorization } });
      expect(res.status, authorization).toBe(401);
      expect(res.body.code, authorization).toBe('invalid_credentials');
    }
  });

  it('are 401 even on a public route', async () => {
    for (const authorization of ['Bearer not.a.jwt', 'Basic dXNlcjpwYXNz', 'Bearer']) {
      const res = await call(server.url, 'GET', '/', { headers: { authorization } });
      expect(res.status, authorization).toBe(401);
    }
    expect((await call(server.url, 'GET', '/')).status).toBe(200);
  });
});

describe('every 401 says how to authenticate (WWW-Authenticate, RFC 9110 15.5.2)', () => {
  it('names the Bearer scheme; with error="invalid_token" when the token sent is malformed, expired or revoked (RFC 6750)', async () => {
    const none = await meRaw(server.url, '');
    const plain = await fetch(`${server.url}/users/me`);
    const badKey = await fetch(`${server.url}/users/me`, { headers: { 'x-api-key': 'kiln_00000000_nope' } });
    const wrongLogin = await fetch(`${server.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: account.email, password: 'not-the-password' }) });
    for (const res of [none, plain, badKey, wrongLogin]) {
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="kiln"');
    }
    const expired = await new SignJWT({}).setSubject(account.id).setIssuer('kiln').setProtectedHeader({ alg: 'HS256' }).setIssuedAt(kilnNow() - 7200).setExpirationTime(kilnNow() - 3600).sign(secretKey);
    for (const token of ['not.a.jwt', expired]) {
      const res = await meRaw(server.url, token);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="kiln", error="invalid_token"');
    }
  });
});
