/**
 * Which text values are refused, and which are not looked at.
 *
 * A lone UTF-16 surrogate (`\ud800` without its pair, which JSON can write)
 * is refused as NUL is (422 naming the field): such text has no UTF-8 form
 * and was stored as U+FFFD, so two different passwords became one. A valid
 * pair (an emoji) is kept as sent.
 *
 * Only the values a route's schema declares are looked at: a body field the
 * route ignores, or a query parameter it does not know, may hold anything,
 * while a declared one (nested too) with a NUL or a lone surrogate is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, DATABASES } from '../../helpers/pg.js';
import { expectProblem } from '../../helpers/problem.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture } from '../../helpers/upload.js';
import { loginHeaders, registerUser, type TestUser } from '../../helpers/users.js';

const ADMIN = { ADMIN_EMAIL: 'boss@example.com', ADMIN_PASSWORD: 'admin-password-123' };
const SURROGATE = 'must not contain a lone surrogate (U+D800 to U+DFFF without its pair)';
const NUL = 'must not contain the NUL character (U+0000)';
const LONE = [
  ['high', '\ud800'],
  ['low', '\udc00'],
] as const;

/** No lone surrogate: read as code points, one is a character of category Cs (a pair is one emoji, not two). */
const wellFormed = (text: string): boolean => !/\p{Cs}/u.test(text);

type Refusal = { detail: string; errors?: Array<{ field: string; message: string }> };

for (const { name, skip } of DATABASES) describe.skipIf(skip)(`text values (${name})`, () => {
  let pg: Awaited<ReturnType<typeof createTestDatabase>> | null = null;
  let server: TestServer;
  let user: TestUser;
  let admin: { authorization: string };
  beforeAll(async () => {
    pg = name === 'PostgreSQL' ? await createTestDatabase() : null;
    server = await startServer({ RATE_LIMIT_AUTH: '0', RATE_LIMIT_DEFAULT: '0', RATE_LIMIT_UPLOAD: '0', ...ADMIN, ...(pg ? { DATABASE_URL: pg.url } : {}) });
    user = await registerUser(server.url, 'texts');
    admin = await loginHeaders(server.url, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
  });
  afterAll(async () => {
    await server.close();
    await pg?.drop();
  });

  const json = (headers: Record<string, string> = {}) => ({ ...headers, 'content-type': 'application/json' });
  const send = (method: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${server.url}${path}`, { method, headers: json(headers), body: JSON.stringify(body) });

  /** A 422 naming exactly `field`, for `message`. */
  async function expectRefused(res: Response, field: string, message: string): Promise<void> {
    const problem = (await expectProblem(res, 422, 'validation_error')) as Refusal;
    expect(problem.errors).toEqual([{ field, message }]);
    expect(problem.detail).toBe(`${field} ${message}.`);
  }

  /** Every product name the admin sees. */
  async function productNames(): Promise<string[]> {
    const res = await fetch(`${server.url}/products?limit=100`, { headers: admin });
    expect(res.status).toBe(200);
    return ((await res.json()) as { products: Array<{ name: string }> }).products.map((p) => p.name);
  }

  describe('lone surrogates', () => {
    it.each(LONE)('a product name with a lone %s surrogate is 422 naming it; nothing is made', async (_kind, lone) => {
      // JSON.stringify writes a lone surrogate as the escape `\ud800`, exactly as a client would send it.
      const body = JSON.stringify({ name: `a${lone}b`, price: '1.00' });
      expect(body).toContain('\\ud');
      const res = await fetch(`${server.url}/products`, { method: 'POST', headers: json(admin), body });
      await expectRefused(res, 'body.name', SURROGATE);
      expect((await productNames()).filter((n) => n.startsWith('a') && n.endsWith('b'))).toEqual([]);
    });

    it.each(LONE)('changing a product name to one with a lone %s surrogate is 422; the name stays', async (_kind, lone) => {
      const made = await send('POST', '/products', { name: `keep-${_kind}`, price: '2.00' }, admin);
      expect(made.status).toBe(201);
      const { id } = (await made.json()) as { id: string };
      await expectRefused(await send('PUT', `/products/${id}`, { name: `x${lone}` }, admin), 'body.name', SURROGATE);
      const now = (await (await fetch(`${server.url}/products/${id}`, { headers: admin })).json()) as { name: string };
      expect(now.name).toBe(`keep-${_kind}`);
    });

    it.each(LONE)('registering with a password of lone %s surrogates is 422 naming it; no account is made', async (kind, lone) => {
      const email = `lone-${kind}@example.com`;
      const res = await send('POST', '/auth/register', { email, username: `lone-${kind}`, password: lone.repeat(8) });
      await expectRefused(res, 'body.password', SURROGATE);
      // What it used to be stored as, and the other half of the pair: neither signs in, since nothing was made.
      for (const password of ['\ufffd'.repeat(8), '\ud800'.repeat(8), '\udc00'.repeat(8)]) {
        const login = await send('POST', '/auth/login', { email, password });
        expect([401, 422]).toContain(login.status);
      }
    });

    it.each(LONE)('signing in with a password holding a lone %s surrogate is 422 naming it', async (_kind, lone) => {
      await expectRefused(await send('POST', '/auth/login', { email: user.email, password: `${user.password}${lone}` }), 'body.password', SURROGATE);
    });

    it.each(LONE)('a username with a lone %s surrogate is 422 naming it', async (kind, lone) => {
      // Its pattern refuses it too (letters, digits, "." "_" "-"): one error, about the username.
      const res = await send('POST', '/auth/register', { email: `user-${kind}@example.com`, username: `ab${lone}c`, password: 'password123' });
      const problem = (await expectProblem(res, 422, 'validation_error')) as Refusal;
      expect(problem.errors?.map((e) => e.field)).toEqual(['body.username']);
    });

    it.each(LONE)('changing your password to one with a lone %s surrogate is 422; the old one still works', async (kind, lone) => {
      // An account of its own: a password change that went through would end the shared user's sessions.
      const own = await registerUser(server.url, `change-${kind}`);
      const res = await send('PUT', '/users/me', { password: `new-password-${lone}`, current_password: own.password }, own.headers);
      await expectRefused(res, 'body.password', SURROGATE);
      expect((await send('POST', '/auth/login', { email: own.email, password: own.password })).status).toBe(200);
    });

    it.each(LONE)('an API key name and an order line (nested) with a lone %s surrogate are 422 naming the field', async (_kind, lone) => {
      await expectRefused(await send('POST', '/auth/api-keys', { name: `key${lone}` }, user.headers), 'body.name', SURROGATE);
      await expectRefused(await send('POST', '/orders', { items: [{ product_id: `p${lone}`, quantity: 1 }] }, user.headers), 'body.items.0.product_id', SURROGATE);
    });

    it('a valid pair (an emoji) is kept as sent, in a product name and in a password', async () => {
      const name = 'Rocket \u{1F680} mug \u{1F431}';
      const made = await send('POST', '/products', { name, price: '3.00' }, admin);
      expect(made.status).toBe(201);
      const created = (await made.json()) as { id: string; name: string };
      expect(created.name).toBe(name);
      const read = (await (await fetch(`${server.url}/products/${created.id}`, { headers: admin })).json()) as { name: string };
      expect(read.name).toBe(name);

      const password = '\u{1F680}'.repeat(8);
      const reg = await send('POST', '/auth/register', { email: 'emoji@example.com', username: 'emoji', password });
      expect(reg.status).toBe(201);
      expect((await send('POST', '/auth/login', { email: 'emoji@example.com', password })).status).toBe(200);
      expect((await send('POST', '/auth/login', { email: 'emoji@example.com', password: '\ufffd'.repeat(8) })).status).toBe(401);
    });

    it('a query or path cannot carry one: the UTF-8 bytes of a surrogate (ED A0 80) are not UTF-8, and stay as written', async () => {
      // The query keeps a bad percent-encoding as written: a search for the text "%ED%A0%80", which finds nothing.
      const res = await fetch(`${server.url}/products?q=%ED%A0%80`, { headers: admin });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { products: unknown[] }).products).toEqual([]);
      // In a path it is not a URL at all.
      await expectProblem(await fetch(`${server.url}/products/%ED%A0%80`, { headers: admin }), 400, 'bad_url');
    });

    /** A custom-order upload (one photo) whose `notes` field is `bytes` under `contentType`, built by hand. */
    function uploadWithNotes(bytes: Buffer, contentType: string): Promise<Response> {
      const boundary = 'kiln-text-values';
      const part = (headers: string, body: Buffer) => Buffer.concat([Buffer.from(`--${boundary}\r\n${headers}\r\n\r\n`), body, Buffer.from('\r\n')]);
      const body = Buffer.concat([
        part('Content-Disposition: form-data; name="pet_name"', Buffer.from('Max')),
        part(`Content-Disposition: form-data; name="notes"\r\nContent-Type: ${contentType}`, bytes),
        part('Content-Disposition: form-data; name="files"; filename="rocket.jpg"\r\nContent-Type: image/jpeg', fixture('rocket_small_640x427.jpg')),
        Buffer.from(`--${boundary}--\r\n`),
      ]);
      return fetch(`${server.url}/api/images/upload`, { method: 'POST', headers: { ...user.headers, 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
    }

    it('a multipart text field in UTF-8 cannot carry one: the bytes of a surrogate (ED A0 80) are not UTF-8 and read as U+FFFD', async () => {
      const res = await uploadWithNotes(Buffer.from([0x61, 0xed, 0xa0, 0x80, 0x62]), 'text/plain; charset=utf-8');
      const text = await res.text();
      expect(res.status, text).toBe(201);
      const notes = (JSON.parse(text) as { order_metadata: { notes: string } }).order_metadata.notes;
      expect(wellFormed(notes)).toBe(true);
      expect(notes).toMatch(/^a\ufffd+b$/);
    });

    it.each([
      ['high', [0x61, 0x00, 0x00, 0xd8, 0x62, 0x00]],
      ['low', [0x61, 0x00, 0x00, 0xdc, 0x62, 0x00]],
    ])('a multipart text field in UTF-16 holding a lone %s surrogate is 422 naming it; no order is made', async (_kind, bytes) => {
      // busboy decodes a part that names charset=utf-16le as UTF-16 units, unpaired ones included.
      await expectRefused(await uploadWithNotes(Buffer.from(bytes), 'text/plain; charset=utf-16le'), 'body.notes', SURROGATE);
      const orders = (await (await fetch(`${server.url}/api/images/orders`, { headers: user.headers })).json()) as { orders: Array<{ notes: string | null }> };
      expect(orders.orders.every((o) => o.notes === null || wellFormed(o.notes))).toBe(true);
    });
  });

  describe('values the route does not know are not looked at', () => {
    it.each(['yyy=%00', 'yyy=a%00b&limit=5', 'zzz=%00&zzz=%00', '%00=1'])('GET /products?%s is 200', async (query) => {
      const res = await fetch(`${server.url}/products?${query}`, { headers: user.headers });
      expect(res.status, await res.clone().text()).toBe(200);
    });

    it.each([
      ['a NUL', { zzz: 'a\u0000' }],
      ['a lone surrogate', { zzz: 'a\ud800' }],
      ['a NUL in a key', { 'z\u0000z': 'a' }],
      ['a NUL deep inside', { zzz: { deeper: ['a\u0000'] } }],
    ])('PUT /users/me with %s in a field it ignores is 200, and nothing changes', async (_what, body) => {
      const res = await send('PUT', '/users/me', body, user.headers);
      expect(res.status, await res.clone().text()).toBe(200);
      expect(((await res.json()) as { username: string }).username).toBe(user.username);
    });

    it.each([
      ['a NUL', 'a\u0000b', NUL],
      ['a lone surrogate', 'a\udc00b', SURROGATE],
    ])('an ignored field does not hide a declared one: %s in current_password is still 422 naming it', async (_what, text, message) => {
      await expectRefused(await send('PUT', '/users/me', { zzz: 'ok', current_password: text }, user.headers), 'body.current_password', message);
    });

    it.each(['q=a%00b', 'yyy=ok&q=a%00b', 'category=%00'])('a known query parameter with a NUL is still 422 (GET /products?%s)', async (query) => {
      const res = await fetch(`${server.url}/products?${query}`, { headers: user.headers });
      const problem = (await expectProblem(res, 422, 'validation_error')) as Refusal;
      expect(problem.errors?.[0]?.message).toBe(NUL);
      expect(problem.errors?.[0]?.field).toMatch(/^querystring\.(q|category)$/);
    });

    it('a NUL in a declared nested field is still 422 naming it', async () => {
      await expectRefused(await send('POST', '/orders', { items: [{ product_id: 'a\u0000', quantity: 1 }] }, user.headers), 'body.items.0.product_id', NUL);
    });
  });
});
