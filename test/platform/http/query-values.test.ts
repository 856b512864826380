/**
 * Query values are text read as the types they stand for. `Infinity` and
 * `1e309` read as numbers that no bound applies to (Ajv checks `minimum` and
 * `maximum` only on finite ones), and `0x10` or `1e1` as numbers nobody
 * wrote, so they are refused as bad values: 422 on
 * every paged listing, never a 500 from the database or a silent page. A
 * plugin's own 4xx carries a code named after its status.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { expectProblem } from '../../helpers/problem.js';
import { getRequest, RawConnection } from '../../helpers/raw-http.js';
import { loginHeaders, registerUser, type TestUser } from '../../helpers/users.js';

const ADMIN = { email: 'root@kiln.test', password: 'root password 1' };
let server: TestServer;
let user: TestUser;
let admin: Record<string, string>;
beforeAll(async () => {
  server = await startServer({ RATE_LIMIT_AUTH: '0', RATE_LIMIT_DEFAULT: '0', ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
  user = await registerUser(server.url, 'lister');
  admin = await loginHeaders(server.url, ADMIN.email, ADMIN.password);
});
afterAll(async () => server.close());

const LISTINGS: Array<[path: string, who: 'user' | 'admin' | 'anyone']> = [
  ['/products', 'anyone'],
  ['/orders', 'user'],
  ['/api/v1/jobs', 'user'],
  ['/admin/users', 'admin'],
  ['/admin/orders', 'admin'],
];

describe('a number that is not finite', () => {
  it.each(LISTINGS)('%s?limit=Infinity, 1e309 and -Infinity are 422 naming the field', async (path, who) => {
    const headers = who === 'admin' ? admin : who === 'user' ? user.headers : {};
    for (const value of ['Infinity', '1e309', '-Infinity']) {
      const res = await fetch(`${server.url}${path}?limit=${value}`, { headers });
      const body = (await expectProblem(res, 422, 'validation_error')) as { errors?: unknown };
      expect(body.errors, `${path}?limit=${value}`).toEqual([{ field: 'querystring.limit', message: 'must be a finite number in decimal digits' }]);
    }
    expect((await fetch(`${server.url}${path}?limit=5`, { headers })).status).toBe(200);
  });
});

describe('a number not written in decimal digits', () => {
  it.each(LISTINGS)('%s?limit=0x10, 1e1, 0b11, " 12" and +5 are 422 naming the field; 5 and 05 are read', async (path, who) => {
    const headers = who === 'admin' ? admin : who === 'user' ? user.headers : {};
    for (const value of ['0x10', '1e1', '0b11', '%2012', '+5', '5.']) {
      const res = await fetch(`${server.url}${path}?limit=${value}`, { headers });
      const body = (await expectProblem(res, 422, 'validation_error')) as { errors?: unknown };
      expect(body.errors, `${path}?limit=${value}`).toEqual([{ field: 'querystring.limit', message: 'must be a finite number in decimal digits' }]);
    }
    for (const value of ['5', '05']) expect((await fetch(`${server.url}${path}?limit=${value}`, { headers })).status, `${path}?limit=${value}`).toBe(200);
  });
});

describe("a plugin's own refusal", () => {
  it('is problem+json whose code names its status: the documentation\'s static files refuse a way out of their folder with 403 forbidden', async () => {
    // fetch and http.request resolve the dots before sending; the path must reach the server as written.
    const conn = await RawConnection.open(server.url);
    conn.send(getRequest('/docs/static/../../package.json'));
    const [answer] = await conn.answers(1).finally(() => conn.destroy());
    expect(answer?.status).toBe(403);
    expect(JSON.parse(answer?.body.toString() ?? '')).toMatchObject({ status: 403, code: 'forbidden', type: 'urn:kiln:problem:forbidden' });
  });
});
