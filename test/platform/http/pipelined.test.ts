/**
 * A client that pipelines many GETs of a large (streamed) image and hangs up
 * before they are answered: each queued request's file must be closed with
 * the connection (platform/http/pipelined.ts), not held open for the life of
 * the process.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendStoredImage, SMALL_FILE_BYTES } from '../../../src/images/serve.js';
import { FsBlobStore } from '../../../src/platform/blobs/fs.js';
import type { ByteRange } from '../../../src/platform/blobs/index.js';
import { closeQueuedWithConnection } from '../../../src/platform/http/pipelined.js';
import { getRequest, RawConnection } from '../../helpers/raw-http.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { until } from '../../helpers/until.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { registerUser } from '../../helpers/users.js';

/** 2560x1600: its original is well over SMALL_FILE_BYTES, so it is streamed from an open file. */
const PATH_PHOTO = fixture('path_2560x1600_olympus_exif.jpg');
const openFiles = () => readdirSync('/proc/self/fd').length;

let server: TestServer;
let original: string;

beforeAll(async () => {
  server = await startServer({ RATE_LIMIT_DEFAULT: '0' });
  const user = await registerUser(server.url);
  const res = await postMultipart(`${server.url}/projects/pipelined/images`, [{ field: 'file', filename: 'p.jpg', data: PATH_PHOTO, type: 'image/jpeg' }], user.headers);
  expect(res.status).toBe(201);
  original = ((await res.json()) as { urls: { original: string } }).urls.original;
  const whole = await fetch(`${server.url}${original}`);
  expect((await whole.arrayBuffer()).byteLength).toBeGreaterThan(SMALL_FILE_BYTES);
});
afterAll(async () => server.close());

describe('pipelined requests whose connection closes before their turn', () => {
  it('leave no file open and no handler running, and the server answers the next client', async () => {
    const before = openFiles();
    for (let round = 0; round < 3; round++) {
      const conn = await RawConnection.open(server.url);
      conn.send(getRequest(original).repeat(300));
      // Hung up once the handlers have opened their files, long before 300 answers of ~1 MB could go out.
      await until(() => openFiles() > before + 50, 5000);
      conn.destroy();
    }
    // Without the fix about 300 files a round stay open, for as long as the process runs.
    await until(() => openFiles() <= before + 10 && server.app.inflight.size === 0, 5000).catch(() => undefined);
    expect(openFiles()).toBeLessThanOrEqual(before + 10);
    expect(server.app.inflight.size).toBe(0);
    expect((await fetch(`${server.url}${original}`)).status).toBe(200);
  });
});

/** A store that takes a while to open a file, as S3 takes a round trip. */
class SlowStore extends FsBlobStore {
  override async read(key: string, range?: ByteRange) {
    await new Promise((r) => setTimeout(r, 300));
    return super.read(key, range);
  }
}

describe('an image answer whose client hung up while its file was being opened', () => {
  it('closes the file it opened: the response it would go to is closed already', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-pipelined-'));
    const blobs = new SlowStore(path.join(dir, 'blobs'), path.join(dir, 'tmp'));
    await blobs.put('gallery/p/original.jpg', PATH_PHOTO, 'image/jpeg');
    const file = { key: 'gallery/p/original.jpg', etag: createHash('sha256').update(PATH_PHOTO).digest('hex'), bytes: PATH_PHOTO.length, lastModified: new Date(), cacheControl: 'private' };
    const app = Fastify({
      serverFactory: (handler) =>
        createServer((req, res) => {
          closeQueuedWithConnection(req, res);
          handler(req, res);
        }),
    });
    app.get('/img', (request, reply) => sendStoredImage(request, reply, blobs, file));
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const before = openFiles();
      const conn = await RawConnection.open(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
      conn.send(getRequest('/img').repeat(100));
      // Gone before the store has opened a single file.
      await new Promise((r) => setTimeout(r, 50));
      conn.destroy();
      // Past the store's 300 ms: every handler has had its file opened (and, with the fix, closed).
      await new Promise((r) => setTimeout(r, 600));
      await until(() => openFiles() <= before + 5, 3000).catch(() => undefined);
      expect(openFiles()).toBeLessThanOrEqual(before + 5);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
