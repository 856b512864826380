/**
 * Text holding the NUL character (U+0000) is refused as a bad value (422
 * naming the field) wherever it comes in: a JSON body, a query, a path, a
 * multipart text field. PostgreSQL's text cannot store it, so on PostgreSQL
 * each of these was a 500; on SQLite they are refused the same way, so a
 * client sees one behaviour whatever the database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, DATABASES } from '../../helpers/pg.js';
import { expectProblem } from '../../helpers/problem.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture } from '../../helpers/upload.js';
import { registerUser, type TestUser } from '../../helpers/users.js';

for (const { name, skip } of DATABASES) describe.skipIf(skip)(`the NUL character (${name})`, () => {
  let pg: Awaited<ReturnType<typeof createTestDatabase>> | null = null;
  let server: TestServer;
  let user: TestUser;
  beforeAll(async () => {
    pg = name === 'PostgreSQL' ? await createTestDatabase() : null;
    server = await startServer({ RATE_LIMIT_AUTH: '0', RATE_LIMIT_DEFAULT: '0', RATE_LIMIT_UPLOAD: '0', ...(pg ? { DATABASE_URL: pg.url } : {}) });
    user = await registerUser(server.url, 'nul');
  });
  afterAll(async () => {
    await server.close();
    await pg?.drop();
  });

  const json = (headers: Record<string, string> = {}) => ({ ...headers, 'content-type': 'application/json' });

  it.each([
    ['/auth/login', { email: 'a\u0000@example.com', password: 'password123' }, 'body.email'],
    ['/auth/register', { email: 'n@example.com', username: 'a\u0000b', password: 'password123' }, 'body.username'],
  ])('POST %s with a NUL in a field is 422 naming it', async (path, body, field) => {
    const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: json(), body: JSON.stringify(body) });
    const problem = (await expectProblem(res, 422, 'validation_error')) as { errors?: Array<{ field: string }> };
    expect(problem.errors?.map((e) => e.field)).toEqual([field]);
  });

  it('a JSON body of a signed-in route: 422, nothing made', async () => {
    const res = await fetch(`${server.url}/auth/api-keys`, { method: 'POST', headers: json(user.headers), body: JSON.stringify({ name: 'a\u0000b' }) });
    await expectProblem(res, 422, 'validation_error');
    const keys = (await (await fetch(`${server.url}/auth/api-keys`, { headers: user.headers })).json()) as unknown[];
    expect(keys).toEqual([]);
  });

  it.each(['/products?q=a%00b', '/products/a%00b', '/api/v1/jobs/a%00b', '/orders/a%00b', '/api/images/orders/a%00b', '/pipeline/status/a%00b'])('GET %s is 422', async (path) => {
    await expectProblem(await fetch(`${server.url}${path}`, { headers: user.headers }), 422, 'validation_error');
  });

  it('a multipart text field of a custom order: 422 naming it, no order made', async () => {
    const form = new FormData();
    form.append('pet_name', 'Max');
    form.append('notes', 'likes\u0000fetch');
    form.append('files', new Blob([fixture('rocket_small_640x427.jpg')], { type: 'image/jpeg' }), 'rocket.jpg');
    const res = await fetch(`${server.url}/api/images/upload`, { method: 'POST', headers: user.headers, body: form });
    const problem = (await expectProblem(res, 422, 'validation_error')) as { errors?: Array<{ field: string }> };
    expect(problem.errors?.map((e) => e.field)).toEqual(['body.notes']);
    const orders = (await (await fetch(`${server.url}/api/images/orders`, { headers: user.headers })).json()) as { orders: unknown[] };
    expect(orders.orders).toEqual([]);
  });
});
