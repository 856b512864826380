/**
 * A multipart body that is not what it says (no boundary, cut short, a JSON
 * text field that is not JSON) is the client's mistake: 400 or 422 on every
 * upload route, never a 500, nothing left behind, and the server carries on.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture } from '../../helpers/upload.js';
import { registerUser, type TestUser } from '../../helpers/users.js';

let server: TestServer;
let user: TestUser;
beforeAll(async () => {
  server = await startServer();
  user = await registerUser(server.url, 'sender');
});
afterAll(async () => server.close());

const ROUTES = ['/projects/malformed/images', '/api/images/upload', '/api/v1/upload'];
const BOUNDARY = 'kilnboundary';
const photo = fixture('rocket_small_640x427.jpg');

function part(field: string, data: Buffer | string, type: string, filename?: string): Buffer {
  const disposition = `form-data; name="${field}"${filename ? `; filename="${filename}"` : ''}`;
  return Buffer.concat([Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: ${disposition}\r\nContent-Type: ${type}\r\n\r\n`), Buffer.from(data), Buffer.from('\r\n')]);
}

async function post(route: string, body: Buffer, contentType: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${server.url}${route}`, { method: 'POST', body, headers: { ...user.headers, 'content-type': contentType } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The stable code of an answer: problem+json's `code`, or the AI-edit envelope's `data.error`. */
function codeOf(body: Record<string, unknown>): unknown {
  return body.code !== undefined && typeof body.code === 'string' ? body.code : (body.data as { error?: unknown } | undefined)?.error;
}

async function tempFiles(): Promise<string[]> {
  return readdir(path.join(server.dataDir, 'tmp'), { recursive: true });
}

describe.each(ROUTES)('%s', (route) => {
  const field = route === '/api/images/upload' ? 'files' : 'file';

  it('a body cut off in the middle of the file is 400 malformed_multipart', async () => {
    const whole = part(field, photo, 'image/jpeg', 'rocket.jpg');
    const res = await post(route, whole.subarray(0, whole.length - 5000), `multipart/form-data; boundary=${BOUNDARY}`);
    expect(res.status).toBe(400);
    expect(codeOf(res.body)).toBe('malformed_multipart');
    expect(await tempFiles()).toEqual([]);
  });

  it('multipart/form-data without a boundary is 400 malformed_multipart', async () => {
    const res = await post(route, part(field, photo, 'image/jpeg', 'rocket.jpg'), 'multipart/form-data');
    expect(res.status).toBe(400);
    expect(codeOf(res.body)).toBe('malformed_multipart');
  });

  // Only custom orders read text fields; the other routes take the file and ignore other fields.
  it.runIf(route === '/api/images/upload')('a text field declared application/json that is not JSON is 422', async () => {
    const body = Buffer.concat([part('meta', '{not json', 'application/json'), part(field, photo, 'image/jpeg', 'rocket.jpg'), Buffer.from(`--${BOUNDARY}--\r\n`)]);
    const res = await post(route, body, `multipart/form-data; boundary=${BOUNDARY}`);
    expect(res.status).toBe(422);
    expect(await tempFiles()).toEqual([]);
  });
});

it('the server is still healthy afterwards', async () => {
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
});
