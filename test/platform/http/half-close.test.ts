/**
 * A client that sends its request and then closes its side of the
 * connection (a FIN: `nc -N`, some proxies) still gets its answer, from a
 * route that answers asynchronously and from the front door while it loads
 * what a read needs; then the connection closes.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { registerUser } from '../../helpers/users.js';

let server: TestServer;
let thumb: string;
beforeAll(async () => {
  // No default rate limit: the front door reads anonymous image requests itself.
  server = await startServer({ RATE_LIMIT_DEFAULT: '0' });
  const user = await registerUser(server.url);
  const res = await postMultipart(`${server.url}/projects/halfclose/images`, [{ field: 'file', filename: 'r.jpg', data: fixture('rocket_small_640x427.jpg'), type: 'image/jpeg' }], user.headers);
  thumb = ((await res.json()) as { urls: { thumb: string } }).urls.thumb;
});
afterAll(async () => server.close());

/** Sends `request`, closes the sending side, and resolves with all that came back once the server closed. */
async function askAndHalfClose(baseUrl: string, request: string): Promise<string> {
  const { port } = new URL(baseUrl);
  const socket = connect(Number(port), '127.0.0.1');
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.once('connect', () => socket.end(request));
  await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
  socket.destroy();
  return text;
}

describe('a request followed by the client closing its side', () => {
  it('is answered by a route that answers asynchronously (Node reads the connection)', async () => {
    expect(await askAndHalfClose(server.url, 'GET /health HTTP/1.1\r\nHost: kiln.test\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('is answered by the front door, also while it loads what the read needs', async () => {
    // A second server on the same data has read nothing yet: its front door loads the row and bytes, then answers.
    const fresh = await startServer({ RATE_LIMIT_DEFAULT: '0' }, { dataDir: server.dataDir });
    try {
      const [first, second] = [await askAndHalfClose(fresh.url, `GET ${thumb} HTTP/1.1\r\nHost: kiln.test\r\n\r\n`), await askAndHalfClose(fresh.url, `GET ${thumb} HTTP/1.1\r\nHost: kiln.test\r\n\r\n`)];
      expect(first).toMatch(/^HTTP\/1\.1 200 /);
      expect(second).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      await fresh.close();
    }
  });
});
