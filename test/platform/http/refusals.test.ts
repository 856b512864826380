/**
 * A request refused before its body was read (401, 403, 404 on an upload)
 * is answered once the body is read out, so a client that is still sending
 * gets the answer instead of a broken connection; a body past the bound is
 * cut off. The client here sends its body slowly, as a browser on a slow
 * link does, so the refusal comes while most of it has yet to arrive.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { until, uploadStaging } from '../../helpers/files.js';
import { RawConnection, type RawAnswer } from '../../helpers/raw-http.js';

let server: TestServer;
let alice: TestUser;
let bob: TestUser;
beforeAll(async () => {
  // MAX_UPLOAD_SIZE x (MAX_FILES_PER_ORDER + 1) = 256 KiB is what a refused request may still send.
  server = await startServer({ RATE_LIMIT_AUTH: '0', RATE_LIMIT_UPLOAD: '0', RATE_LIMIT_DEFAULT: '0', MAX_UPLOAD_SIZE: String(128 * 1024), MAX_FILES_PER_ORDER: '1' });
  [alice, bob] = await Promise.all([registerUser(server.url, 'alice'), registerUser(server.url, 'bob')]);
  const claimed = await postMultipart(`${server.url}/projects/alices/images`, [{ field: 'file', filename: 'rocket.jpg', data: fixture('rocket_small_640x427.jpg') }], alice.headers);
  expect(claimed.status).toBe(201);
});
afterAll(async () => server.close());

const CHUNK = Buffer.alloc(8 * 1024, 0x61);

/**
 * Sends a POST head and then `chunks` x 8 KiB of body, each a few
 * milliseconds after the last, as a client on a slow link does; then reads
 * the answer. `errors`: what writing the body met (a reset, a broken pipe).
 */
async function slowUpload(path: string, headers: Record<string, string>, chunks: number): Promise<{ answer: RawAnswer | Error; errors: string[]; conn: RawConnection }> {
  const conn = await RawConnection.open(server.url);
  const errors: string[] = [];
  conn.socket.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
  const lines = Object.entries({ ...headers, 'content-type': 'multipart/form-data; boundary=kiln', 'content-length': String(chunks * CHUNK.length) }).map(([k, v]) => `${k}: ${v}`);
  conn.send(`POST ${path} HTTP/1.1\r\nhost: kiln.test\r\n${lines.join('\r\n')}\r\n\r\n`);
  for (let i = 0; i < chunks && !conn.socket.destroyed; i++) {
    await delay(3);
    await new Promise<void>((resolve) =>
      conn.socket.write(CHUNK, (err) => {
        if (err) errors.push(err.message);
        resolve();
      }),
    );
  }
  const answer = await conn.answers(1).then(
    ([first]) => first as RawAnswer,
    (err: Error) => err,
  );
  return { answer, errors, conn };
}

describe('a refused upload that is still being sent', () => {
  it.each([
    ['no credentials', '/projects/refused/images', () => ({}), 401, 'unauthorized'],
    ["someone else's project", '/projects/alices/images', () => bob.headers, 404, 'project_not_found'],
    ['an admin route', '/products/none/images', () => alice.headers, 403, 'admin_required'],
  ])('%s: the whole body is taken, then the answer comes, then the connection closes', async (_what, path, headers, status, code) => {
    const { answer, errors, conn } = await slowUpload(path, headers(), 16);
    expect(errors).toEqual([]);
    expect(answer).not.toBeInstanceOf(Error);
    const { status: got, headers: answerHeaders, body } = answer as RawAnswer;
    expect({ status: got, code: (JSON.parse(body.toString()) as { code: unknown }).code }).toEqual({ status, code });
    expect(answerHeaders.connection).toBe('close');
    await conn.closedWithin(5000);
  });

  it('takes a pipeline upload (up to 200 photos) past the custom-order bound, then answers', async () => {
    // 48 x 8 KiB is past MAX_UPLOAD_SIZE x (MAX_FILES_PER_ORDER + 1) but far below 201 photos' worth.
    const { answer, errors, conn } = await slowUpload('/pipeline/upload', {}, 48);
    expect(errors).toEqual([]);
    expect(answer).not.toBeInstanceOf(Error);
    const { status, body } = answer as RawAnswer;
    expect({ status, code: (JSON.parse(body.toString()) as { code: unknown }).code }).toEqual({ status: 401, code: 'unauthorized' });
    await conn.closedWithin(5000);
  });

  it('cuts a body off past the bound: the connection closes, and the server carries on', async () => {
    const { conn } = await slowUpload('/projects/refused/images', {}, 48);
    await conn.closedWithin(5000);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });
});

describe('a client that goes away mid-body', () => {
  it('is counted as client_aborted, not as a server error, and leaves no temp file', async () => {
    const errors = async (code: string): Promise<number> => {
      const line = (await (await fetch(`${server.url}/metrics`)).text()).split('\n').find((l) => l.startsWith(`kiln_http_errors_total{route="/api/images/upload",code="${code}"} `));
      return line === undefined ? 0 : Number(line.split(' ')[1]);
    };
    const conn = await RawConnection.open(server.url);
    conn.send(`POST /api/images/upload HTTP/1.1\r\nhost: kiln.test\r\nauthorization: ${alice.headers.authorization}\r\ncontent-type: multipart/form-data; boundary=kiln\r\ncontent-length: 100000\r\n\r\n`);
    conn.send(`--kiln\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`);
    conn.send(fixture('rocket_small_640x427.jpg').subarray(0, 20_000));
    await uploadStaging(server.dataDir);
    conn.destroy();
    await until(async () => (await errors('client_aborted')) === 1);
    expect(await errors('internal_error')).toBe(0);
    await until(async () => (await readdir(path.join(server.dataDir, 'tmp'))).length === 0);
  });
});
