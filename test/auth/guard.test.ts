/**
 * Who may call comes before what was sent: a route that needs a caller
 * answers 401 without one, and an admin route 403 to anyone else, whatever
 * the body, query or path (spec/README.md: "Missing or bad credentials:
 * 401. Authenticated but not allowed: 403"). Every such route is found in
 * the OpenAPI document, so a new route is covered the day it is added.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../helpers/server.js';
import { bearer, login, register } from './helpers.js';

type Operation = { security?: Array<Record<string, unknown>>; responses?: Record<string, unknown> };

let server: TestServer;
let signedIn: Record<string, string>;
let needsCaller: Array<{ method: string; path: string }>;

/** The route's path with every parameter too long to be valid, and a query no schema allows. */
function badUrl(path: string): string {
  return `${server.url}${path.replace(/\{[^}]+\}/g, 'x'.repeat(80))}?limit=0&cursor=%25%25&size=huge`;
}

/** A request whose every part is wrong: path, query, and a body of the wrong shape and type. */
async function garbage(method: string, path: string, headers: Record<string, string> = {}): Promise<Response> {
  const withBody = !['GET', 'HEAD', 'DELETE'].includes(method);
  return fetch(badUrl(path), {
    method,
    headers: { ...headers, ...(withBody ? { 'content-type': 'application/json' } : {}) },
    body: withBody ? '{"email": 7, "password": [], "is_admin": null, "status": {}, "name": ""}' : undefined,
  });
}

beforeAll(async () => {
  server = await startServer({ RATE_LIMIT_AUTH: '0', RATE_LIMIT_UPLOAD: '0', RATE_LIMIT_DEFAULT: '0' });
  signedIn = bearer((await login(server.url, await register(server.url))).access_token);
  const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, Operation>> };
  needsCaller = Object.entries(doc.paths).flatMap(([path, operations]) =>
    Object.entries(operations)
      .filter(([, op]) => op.security?.length && !op.security.some((entry) => Object.keys(entry).length === 0))
      .map(([method]) => ({ method: method.toUpperCase(), path })),
  );
});
afterAll(async () => server.close());

describe('the guard answers before validation', () => {
  it('finds the routes that need a caller in the OpenAPI document', () => {
    expect(needsCaller.length).toBeGreaterThan(20);
    expect(needsCaller).toContainEqual({ method: 'PATCH', path: '/admin/users/{id}' });
    expect(needsCaller).toContainEqual({ method: 'POST', path: '/projects/{project_id}/images' });
  });

  it('every route that needs a caller is 401 without one, whatever was sent', async () => {
    for (const { method, path } of needsCaller) {
      const res = await garbage(method, path);
      expect(res.status, `${method} ${path}`).toBe(401);
    }
  });

  it('every admin route is 403 for a signed-in user who is not an admin, whatever was sent', async () => {
    for (const [method, path] of [
      ['GET', '/admin/users'],
      ['PATCH', '/admin/users/{id}'],
      ['GET', '/admin/orders'],
      ['PUT', '/api/images/orders/{order_id}/status'],
      ['GET', '/api/v1/cache/status'],
    ] as const) {
      const res = await garbage(method, path, signedIn);
      expect(res.status, `${method} ${path}`).toBe(403);
    }
  });

  it('a caller who may use the route still gets 422 for what is wrong in it', async () => {
    const res = await garbage('PUT', '/users/me', signedIn);
    expect(res.status).toBe(422);
  });
});
