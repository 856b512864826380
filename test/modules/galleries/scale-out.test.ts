/**
 * Two processes on one DATA_DIR and one Redis: each keeps served images'
 * rows and small variants in memory, and a delete made through one is
 * broadcast so the other stops serving the image at once, instead of when
 * its memory expires (a minute).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { dropRedisPrefix, newPrefix } from '../../helpers/redis.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { registerUser } from '../../helpers/users.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function twoProcesses(env: Record<string, string>): Promise<[TestServer, TestServer]> {
  const prefix = newPrefix();
  cleanups.push(() => dropRedisPrefix(REDIS_URL as string, prefix));
  const shared = { REDIS_URL: REDIS_URL as string, REDIS_PREFIX: prefix, ...env };
  const a = await startServer(shared);
  cleanups.push(() => a.close());
  const b = await startServer(shared, { dataDir: a.dataDir });
  cleanups.push(() => b.close());
  return [a, b];
}

describe.skipIf(!REDIS_URL)('a gallery delete reaches the other processes through Redis', () => {
  for (const publicRead of ['true', 'false']) {
    it(`the other process stops serving the image at once, a revalidation included (GALLERY_PUBLIC_READ=${publicRead})`, async () => {
      const [a, b] = await twoProcesses({ GALLERY_PUBLIC_READ: publicRead });
      const owner = await registerUser(a.url, 'owner');
      const reader = publicRead === 'true' ? {} : owner.headers;
      const res = await postMultipart(`${a.url}/projects/shared/images`, [{ field: 'file', filename: 'r.jpg', data: fixture('rocket_small_640x427.jpg') }], owner.headers);
      expect(res.status).toBe(201);
      const { image_id: imageId, urls } = (await res.json()) as { image_id: string; urls: Record<string, string> };

      // B serves the thumb twice: the second from what it keeps in memory.
      let etag = '';
      for (let i = 0; i < 2; i++) {
        const served = await fetch(`${b.url}${urls.thumb}`, { headers: reader });
        expect(served.status).toBe(200);
        etag = served.headers.get('etag') ?? '';
        await served.arrayBuffer();
      }

      expect((await fetch(`${a.url}/projects/shared/images/${imageId}`, { method: 'DELETE', headers: owner.headers })).status).toBe(204);
      // Well under the minute B's memory would otherwise keep it.
      await expect.poll(async () => (await fetch(`${b.url}${urls.thumb}`, { headers: reader })).status, { timeout: 5_000, interval: 50 }).toBe(404);
      expect((await fetch(`${b.url}${urls.thumb}`, { headers: { ...reader, 'if-none-match': etag } })).status).toBe(404);
    });
  }
});
