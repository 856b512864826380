/**
 * Which bodies a route takes (src/platform/http/content-types.ts): a route
 * that reads JSON, or no body at all, refuses a multipart/form-data body
 * with 415 `unsupported_media_type`, as it refuses text/plain, while the
 * upload routes take theirs; and a route that declares no body but whose
 * method carries one (DELETE, PUT, POST) still parses a body that is sent,
 * so its OpenAPI operation lists 400, 413 and 415. The server helper fails
 * this file if a route answers a status its operation does not list.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectProblem } from '../../helpers/problem.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { registerUser, type TestUser } from '../../helpers/users.js';

let server: TestServer;
let alice: TestUser;
beforeAll(async () => {
  server = await startServer({ RATE_LIMIT_AUTH: '0', RATE_LIMIT_UPLOAD: '0', RATE_LIMIT_DEFAULT: '0' });
  alice = await registerUser(server.url, 'alice');
});
afterAll(async () => server.close());

/** A multipart/form-data body of text fields, sent with `method`. */
function form(fields: Record<string, string>): FormData {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) body.append(name, value);
  return body;
}

describe('a multipart body sent to a route that reads none', () => {
  it.each([
    ['POST', '/auth/login', false, { email: 'alice@example.com', password: 'password-alice' }],
    ['POST', '/auth/register', false, { email: 'mallory@example.com', username: 'mallory', password: 'password-mallory' }],
    ['POST', '/auth/refresh', false, { refresh_token: 'x' }],
    ['POST', '/auth/logout', true, { refresh_token: 'x' }],
    ['PUT', '/users/me', true, { username: 'alice2' }],
    ['POST', '/auth/api-keys', true, { name: 'ci' }],
    ['POST', '/orders', true, { items: 'x' }],
  ] as const)('%s %s is 415 unsupported_media_type, not a 422 about its fields', async (method, path, signedIn, fields) => {
    const res = await fetch(`${server.url}${path}`, { method, body: form(fields), headers: signedIn ? alice.headers : {} });
    const { detail } = await expectProblem(res, 415, 'unsupported_media_type');
    // The same answer as a text/plain body gets.
    const plain = await fetch(`${server.url}${path}`, { method, body: JSON.stringify(fields), headers: { ...(signedIn ? alice.headers : {}), 'content-type': 'text/plain' } });
    expect((await expectProblem(plain, 415, 'unsupported_media_type')).detail).toBe(detail);
  });

  it('does nothing with the parts: the account a multipart register named does not exist', async () => {
    const res = await fetch(`${server.url}/auth/register`, { method: 'POST', body: form({ email: 'eve@example.com', username: 'eve', password: 'password-eve-1' }) });
    await expectProblem(res, 415, 'unsupported_media_type');
    const login = await fetch(`${server.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'eve@example.com', password: 'password-eve-1' }) });
    expect(login.status).toBe(401);
  });

  it('is refused by an AI edit route in its envelope, as text/plain is', async () => {
    const res = await fetch(`${server.url}/api/v1/process/status`, { method: 'POST', body: form({ init_id: 'x' }), headers: alice.headers });
    expect(res.status).toBe(415);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { success: boolean; code: number; data: { error: string } };
    expect(body).toMatchObject({ success: false, code: 5001, data: { error: 'unsupported_media_type' } });
  });

  it('is refused by a route that takes no body (DELETE), as another type is', async () => {
    const res = await fetch(`${server.url}/auth/api-keys/00000000-0000-0000-0000-000000000000`, { method: 'DELETE', body: form({ a: 'b' }), headers: alice.headers });
    await expectProblem(res, 415, 'unsupported_media_type');
  });

  it('is still taken by an upload route', async () => {
    const res = await postMultipart(`${server.url}/projects/alices/images`, [{ field: 'file', filename: 'rocket.jpg', data: fixture('rocket_small_640x427.jpg') }], alice.headers);
    expect(res.status).toBe(201);
  });
});

describe('a body sent to a route that declares none', () => {
  async function newKey(): Promise<string> {
    const res = await fetch(`${server.url}/auth/api-keys`, { method: 'POST', headers: { ...alice.headers, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'k' }) });
    expect(res.status).toBe(201);
    return ((await res.json()) as { id: string }).id;
  }

  it('is parsed: broken JSON is 400, another type 415, too large 413; JSON is ignored', async () => {
    const id = await newKey();
    const url = `${server.url}/auth/api-keys/${id}`;
    const send = (body: string, type: string): Promise<Response> => fetch(url, { method: 'DELETE', body, headers: { ...alice.headers, 'content-type': type } });
    await expectProblem(await send('{"a":', 'application/json'), 400, 'invalid_json');
    await expectProblem(await send('{"a":1}', 'text/plain'), 415, 'unsupported_media_type');
    await expectProblem(await send(JSON.stringify({ a: 'x'.repeat(1024 * 1024) }), 'application/json'), 413, 'body_too_large');
    expect((await send('{"a":1}', 'application/json')).status).toBe(204);
  });

  it('is parsed by PUT /projects/{id}/primary/{image_id} and POST /api/v1/initiate-process (in its envelope)', async () => {
    const primary = await fetch(`${server.url}/projects/alices/primary/nope`, { method: 'PUT', body: '{"a":', headers: { ...alice.headers, 'content-type': 'application/json' } });
    await expectProblem(primary, 400, 'invalid_json');
    const initiate = await fetch(`${server.url}/api/v1/initiate-process`, { method: 'POST', body: 'x', headers: { ...alice.headers, 'content-type': 'text/plain' } });
    expect(initiate.status).toBe(415);
    expect(await initiate.json()).toMatchObject({ success: false, code: 3001, data: { error: 'unsupported_media_type' } });
  });

  it('is in the OpenAPI document: every route of a method that carries a body lists 400, 413 and 415, in its own error shape', async () => {
    type Answer = { content?: Record<string, unknown> };
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, { responses?: Record<string, Answer> }>> };
    let checked = 0;
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(operations)) {
        if (!['post', 'put', 'patch', 'delete'].includes(method) || !op.responses) continue;
        expect(Object.keys(op.responses), `${method} ${path}`).toEqual(expect.arrayContaining(['400', '413', '415']));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(20);
    const initiate = doc.paths['/api/v1/initiate-process']?.post?.responses ?? {};
    for (const status of ['400', '413', '415', '500']) expect(Object.keys(initiate[status]?.content ?? {}), status).toEqual(['application/json']);
    const deleteKey = doc.paths['/auth/api-keys/{id}']?.delete?.responses ?? {};
    expect(Object.keys(deleteKey['415']?.content ?? {})).toEqual(['application/problem+json']);
  });
});
