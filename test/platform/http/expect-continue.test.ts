/**
 * Expect: 100-continue (platform/http/continue.ts): a request its checks
 * refuse is answered at once, without the client being asked for its body;
 * one they let through is told to send it, and is served.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture } from '../../helpers/upload.js';
import { registerUser, type TestUser } from '../../helpers/users.js';

let server: TestServer;
let user: TestUser;
beforeAll(async () => {
  server = await startServer({ RATE_LIMIT_UPLOAD: '0' });
  user = await registerUser(server.url);
});
afterAll(async () => server.close());

/** A socket and everything it has received so far, as text. */
async function open(): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  const { port } = new URL(server.url);
  const socket = connect(Number(port), '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => text, closed };
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('nothing arrived in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('Expect: 100-continue on an upload', () => {
  it('without credentials: 401 at once, no 100 Continue, the body never asked for, the connection closed', async () => {
    const { socket, received, closed } = await open();
    socket.write(`POST /projects/continue/images HTTP/1.1\r\nHost: kiln.test\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n`);
    await until(() => received().includes('\r\n\r\n'));
    expect(received()).not.toContain('100 Continue');
    expect(received()).toMatch(/^HTTP\/1\.1 401 /);
    expect(received().toLowerCase()).toContain('connection: close');
    await closed;
  });

  it('without credentials, from a client that sends its body without waiting (RFC 9110 allows it): the body is read out and the 401 arrives, no reset', async () => {
    // Large enough to be still arriving when the refusal is decided.
    const body = Buffer.alloc(20 * 1024 * 1024, 0x61);
    for (let round = 0; round < 5; round++) {
      const { socket, received, closed } = await open();
      const errors: string[] = [];
      socket.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
      socket.write(`POST /projects/continue/images HTTP/1.1\r\nHost: kiln.test\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
      socket.write(body);
      await closed;
      // Reading the body out asks for it (a 100 Continue), then the refusal.
      expect(received(), `round ${round}`).toMatch(/^(HTTP\/1\.1 100 Continue\r\n\r\n)?HTTP\/1\.1 401 /);
      expect(errors, `round ${round}`).toEqual([]);
    }
  });

  it('with credentials: 100 Continue once the checks have passed, then the body, then 201', async () => {
    const contentType = 'multipart/form-data; boundary=kilnboundary';
    const body = Buffer.concat([
      Buffer.from('--kilnboundary\r\nContent-Disposition: form-data; name="file"; filename="r.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'),
      fixture('rocket_small_640x427.jpg'),
      Buffer.from('\r\n--kilnboundary--\r\n'),
    ]);
    const { socket, received } = await open();
    try {
      socket.write(`POST /projects/continue/images HTTP/1.1\r\nHost: kiln.test\r\nAuthorization: ${user.headers.authorization}\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
      await until(() => received().includes('\r\n\r\n'));
      expect(received()).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\n$/);
      socket.write(body);
      await until(() => /\r\n\r\n[\s\S]*HTTP\/1\.1 201 [\s\S]*\r\n\r\n\{/.test(received()));
    } finally {
      socket.destroy();
    }
  });

  it('on a JSON route the body is asked for as its parser reads it: 100 Continue, then the answer', async () => {
    const body = JSON.stringify({ email: user.email, password: user.password });
    const { socket, received } = await open();
    try {
      socket.write(`POST /auth/login HTTP/1.1\r\nHost: kiln.test\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`);
      await until(() => received().includes('\r\n\r\n'));
      expect(received()).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\n$/);
      socket.write(body);
      await until(() => /HTTP\/1\.1 200 [\s\S]*access_token/.test(received()));
    } finally {
      socket.destroy();
    }
  });
});
