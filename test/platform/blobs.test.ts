import { mkdir, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertKey, roundTrip, type BlobStore } from '../../src/platform/blobs/index.js';
import { FsBlobStore } from '../../src/platform/blobs/fs.js';
import { createS3BlobStore, S3BlobStore } from '../../src/platform/blobs/s3.js';
import { tempDataDir } from '../helpers/config.js';
import { startLocalS3, type LocalS3 } from '../helpers/s3.js';

const { dir, cleanup } = tempDataDir();
afterAll(cleanup);
const tmp = path.join(dir, 'tmp');
const store = new FsBlobStore(path.join(dir, 'blobs'), tmp);
const HOUR = 60 * 60 * 1000;

let s3: LocalS3;
let s3Store: S3BlobStore;
beforeAll(async () => {
  s3 = await startLocalS3(['kiln-test']);
  s3Store = await createS3BlobStore(s3.settings('kiln-test'));
});
afterAll(async () => {
  s3Store.client.destroy();
  await s3.close();
});

/**
 * What every BlobStore does, run against the local disk and against an
 * S3-compatible server on this machine (test/helpers/s3.ts).
 */
const stores: Array<[string, () => BlobStore]> = [
  ['FsBlobStore', () => store],
  ['S3BlobStore', () => s3Store],
];

describe.each(stores)('%s', (_name, current) => {
  it('moves a finished file into place and reads it back, whole and by range', async () => {
    await mkdir(tmp, { recursive: true });
    const local = path.join(tmp, 'upload');
    await writeFile(local, 'hello world');
    await current().putFile('gallery/abc/original.jpg', local, 'image/jpeg');
    expect(await readdir(tmp)).toEqual([]);
    expect((await current().readAll('gallery/abc/original.jpg')).toString()).toBe('hello world');
    expect(await text(await current().read('gallery/abc/original.jpg', { start: 6, end: 10 }))).toBe('world');
    expect(await text(await current().read('gallery/abc/original.jpg'))).toBe('hello world');
    expect((await current().stat('gallery/abc/original.jpg'))?.size).toBe(11);
  });

  it('replaces a blob whole', async () => {
    await current().put('gallery/abc/thumb.jpg', Buffer.from('first'), 'image/jpeg');
    await current().put('gallery/abc/thumb.jpg', Buffer.from('second'), 'image/jpeg');
    expect((await current().readAll('gallery/abc/thumb.jpg')).toString()).toBe('second');
  });

  it('reports a missing blob as absent', async () => {
    expect(await current().stat('gallery/none/x.jpg')).toBeNull();
    await expect(current().read('gallery/none/x.jpg')).rejects.toMatchObject({ status: 404 });
    await expect(current().readAll('gallery/none/x.jpg')).rejects.toMatchObject({ status: 404 });
  });

  it('deletes one blob or a whole prefix, and nothing beside it', async () => {
    await current().put('orders/o1/a.jpg', Buffer.from('a'), 'image/jpeg');
    for (const name of ['b', 'c', 'd', 'e', 'f']) await current().put(`orders/o1/${name}.jpg`, Buffer.from(name), 'image/jpeg');
    await current().put('orders/o1x/keep.jpg', Buffer.from('k'), 'image/jpeg');
    await current().delete('orders/o1/a.jpg');
    await current().delete('orders/o1/a.jpg');
    expect(await current().stat('orders/o1/a.jpg')).toBeNull();
    await current().deletePrefix('orders/o1');
    for (const name of ['b', 'c', 'd', 'e', 'f']) expect(await current().stat(`orders/o1/${name}.jpg`)).toBeNull();
    expect((await current().readAll('orders/o1x/keep.jpg')).toString()).toBe('k');
    await current().deletePrefix('orders/none');
  });

  it('lists every blob under a prefix with when it was written, and nothing beside it', async () => {
    const before = Date.now() - 2000; // file systems and S3 keep whole seconds, or less
    await current().put('listed/p1/original.jpg', Buffer.from('o'), 'image/jpeg');
    await current().put('listed/p1/thumb.jpg', Buffer.from('t'), 'image/jpeg');
    await current().put('listed/p2/deep/er.jpg', Buffer.from('d'), 'image/jpeg');
    await current().put('listedx/p3/thumb.jpg', Buffer.from('x'), 'image/jpeg');
    const listed: Array<{ key: string; modifiedAt: Date }> = [];
    for await (const blob of current().list('listed')) listed.push(blob);
    expect(listed.map((b) => b.key).sort()).toEqual(['listed/p1/original.jpg', 'listed/p1/thumb.jpg', 'listed/p2/deep/er.jpg']);
    for (const b of listed) expect(b.modifiedAt.getTime()).toBeGreaterThan(before);
    const none: unknown[] = [];
    for await (const blob of current().list('listed-nothing')) none.push(blob);
    expect(none).toEqual([]);
  });

  it.each(['../etc/passwd', '/abs', 'gallery/../x', 'a//b', 'Gallery/x', 'gallery/x y', ''])('refuses the key %j', async (key) => {
    expect(() => assertKey(key)).toThrow();
    await expect(current().put(key, Buffer.from('x'), 'image/jpeg')).rejects.toThrow(/invalid blob key/);
  });

  it('takes a key of 512 characters and refuses one of 513', async () => {
    // Short segments, so that a file system's limit on one name is not the one met.
    const key = (length: number) => `long${'/aaaaaaaaa'.repeat(60)}`.slice(0, length).replace(/\/$/, 'b');
    expect(key(512)).toHaveLength(512);
    await current().put(key(512), Buffer.from('x'), 'image/jpeg');
    expect((await current().readAll(key(512))).toString()).toBe('x');
    await current().delete(key(512));
    expect(() => assertKey(key(513))).toThrow(/invalid blob key/);
    await expect(current().put(key(513), Buffer.from('x'), 'image/jpeg')).rejects.toThrow(/invalid blob key/);
  });

  it('passes its health check, and leaves no probe behind', async () => {
    await expect(current().healthCheck()).resolves.toBeUndefined();
    const left: string[] = [];
    for await (const blob of current().list('health')) left.push(blob.key);
    expect(left).toEqual([]);
  });

  it('deletes its probe when reading it back fails', async () => {
    const real = current();
    const written: string[] = [];
    // The store as it is, but its read fails, as a disk or a bucket failing mid-check does.
    const failingRead: Pick<BlobStore, 'put' | 'readAll' | 'delete'> = {
      put: async (key, data, type) => {
        written.push(key);
        return real.put(key, data, type);
      },
      readAll: async () => {
        throw new Error('read failed');
      },
      delete: (key) => real.delete(key),
    };
    await expect(roundTrip(failingRead)).rejects.toThrow('read failed');
    expect(written).toHaveLength(1);
    expect(await real.stat(written[0] as string)).toBeNull();
  });
});

describe('FsBlobStore', () => {
  it('removes the empty directories a crash left once they are old, deepest first, keeping the namespace, fresh ones and those with files', async () => {
    const root = path.join(dir, 'blobs');
    const made = async (rel: string, ageMs: number) => {
      await mkdir(path.join(root, rel), { recursive: true });
      const when = new Date(Date.now() - ageMs);
      for (let p = rel; p.includes('/'); p = path.dirname(p)) await utimes(path.join(root, p), when, when);
    };
    await made('sweepns/old-empty', 2 * HOUR);
    await made('sweepns/order-1/file-1', 2 * HOUR); // nested: both go
    await made('sweepns/fresh-empty', 0);
    await store.put('sweepns/kept/thumb.jpg', Buffer.from('x'), 'image/jpeg');
    await utimes(path.join(root, 'sweepns/kept'), new Date(Date.now() - 2 * HOUR), new Date(Date.now() - 2 * HOUR));
    const before = new Date(Date.now() - HOUR);

    const named = await store.removeEmptyDirectories('sweepns', before, true);
    expect(named.sort()).toEqual(['sweepns/old-empty', 'sweepns/order-1', 'sweepns/order-1/file-1']);
    expect((await readdir(path.join(root, 'sweepns'))).sort()).toEqual(['fresh-empty', 'kept', 'old-empty', 'order-1']);

    expect((await store.removeEmptyDirectories('sweepns', before, false)).sort()).toEqual(named.sort());
    expect((await readdir(path.join(root, 'sweepns'))).sort()).toEqual(['fresh-empty', 'kept']);
    expect(await text(await store.read('sweepns/kept/thumb.jpg'))).toBe('x');
    // The namespace's own directory stays even when nothing is left in it.
    await rm(path.join(root, 'sweepns', 'kept'), { recursive: true });
    await rm(path.join(root, 'sweepns', 'fresh-empty'), { recursive: true });
    expect(await store.removeEmptyDirectories('sweepns', new Date(Date.now() + HOUR), false)).toEqual([]);
    expect(await readdir(path.join(root, 'sweepns'))).toEqual([]);
  });

  it('leaves no temp file behind when a write cannot land', async () => {
    await store.put('fs-only/p/thumb.jpg/inner.jpg', Buffer.from('x'), 'image/jpeg');
    // The key is a directory now: the rename into place fails.
    await expect(store.put('fs-only/p/thumb.jpg', Buffer.from('y'), 'image/jpeg')).rejects.toMatchObject({ code: expect.stringMatching(/EISDIR|ENOTEMPTY|EEXIST/) });
    expect((await readdir(tmp)).filter((f) => f.startsWith('blob-'))).toEqual([]);
  });

  it('never shows a reader half a file: a large write appears whole, by a rename', async () => {
    const body = Buffer.alloc(32 * 1024 * 1024, 7);
    const key = 'fs-only/atomic/original.jpg';
    const file = path.join(dir, 'blobs', key);
    const sizes = new Set<number | 'absent'>();
    let done = false;
    const written = store.put(key, body, 'image/jpeg').finally(() => (done = true));
    // Looks at the file's path on disk for as long as the write runs (and once after).
    for (let last = false; !last; ) {
      last = done;
      sizes.add(await stat(file).then((s) => s.size, () => 'absent' as const));
    }
    await written;
    expect([...sizes].filter((size) => size !== 'absent' && size !== body.length)).toEqual([]);
    expect(sizes.has(body.length)).toBe(true);
    await store.delete(key);
  });

  it('removes the directories a prefix delete leaves empty, up to the namespace', async () => {
    const root = path.join(dir, 'blobs');
    await store.put('fs-only/order-1/file-1/a.jpg', Buffer.from('a'), 'image/jpeg');
    await store.put('fs-only/order-1/file-2/b.jpg', Buffer.from('b'), 'image/jpeg');
    await store.deletePrefix('fs-only/order-1/file-1');
    expect(await readdir(path.join(root, 'fs-only', 'order-1'))).toEqual(['file-2']);
    await store.deletePrefix('fs-only/order-1/file-2');
    expect(await readdir(path.join(root, 'fs-only'))).not.toContain('order-1');
    await store.deletePrefix('fs-only/never-written/x');
    expect((await stat(path.join(root, 'fs-only'))).isDirectory()).toBe(true);
  });

  it('removes an image directory with its last file', async () => {
    const root = path.join(dir, 'blobs', 'fs-only');
    await Promise.all(['original', 'thumb'].map((size) => store.put(`fs-only/image-9/${size}.jpg`, Buffer.from(size), 'image/jpeg')));
    await store.delete('fs-only/image-9/original.jpg');
    expect(await readdir(path.join(root, 'image-9'))).toEqual(['thumb.jpg']);
    await store.delete('fs-only/image-9/thumb.jpg');
    expect(await readdir(root)).not.toContain('image-9');
    await store.delete('fs-only/image-9/thumb.jpg'); // a missing blob is no error
  });

  it('stores four sizes written at once into one new directory', async () => {
    const keys = ['original', 'medium', 'thumb', 'game'].map((size) => `fs-only/burst/${size}.jpg`);
    await Promise.all(keys.map((key, i) => store.put(key, Buffer.from(`size ${i}`), 'image/jpeg')));
    expect(await Promise.all(keys.map(async (key) => (await store.readAll(key)).toString()))).toEqual(['size 0', 'size 1', 'size 2', 'size 3']);
  });

  it('writes into a directory again after it was removed, and after its temp directory was removed', async () => {
    await store.put('fs-only/again/a.jpg', Buffer.from('1'), 'image/jpeg');
    await rm(path.join(dir, 'blobs', 'fs-only', 'again'), { recursive: true });
    await rm(tmp, { recursive: true });
    await store.put('fs-only/again/b.jpg', Buffer.from('2'), 'image/jpeg');
    expect((await store.readAll('fs-only/again/b.jpg')).toString()).toBe('2');
    expect(await readdir(tmp)).toEqual([]);
  });

  it('fails a write whose directory cannot be made, leaving no temp file', async () => {
    await store.put('fs-only/blocked', Buffer.from('a file where a directory would go'), 'image/jpeg');
    const writes = await Promise.allSettled(['original', 'thumb'].map((size) => store.put(`fs-only/blocked/${size}.jpg`, Buffer.from('x'), 'image/jpeg')));
    for (const write of writes) expect(write).toMatchObject({ status: 'rejected', reason: { code: expect.stringMatching(/ENOTDIR|EEXIST/) } });
    expect((await readdir(tmp)).filter((f) => f.startsWith('blob-'))).toEqual([]);
  });
});

describe('S3BlobStore', () => {
  it('keeps every key under its prefix, so one bucket can hold several deployments', async () => {
    const other = await createS3BlobStore(s3.settings('kiln-test', 'tenant-b'));
    try {
      await other.put('gallery/p/thumb.jpg', Buffer.from('b'), 'image/jpeg');
      await s3Store.put('gallery/p/thumb.jpg', Buffer.from('a'), 'image/jpeg');
      expect((await other.readAll('gallery/p/thumb.jpg')).toString()).toBe('b');
      expect((await s3Store.readAll('gallery/p/thumb.jpg')).toString()).toBe('a');
      const bare = await createS3BlobStore(s3.settings('kiln-test'));
      try {
        expect((await bare.readAll('tenant-b/gallery/p/thumb.jpg')).toString()).toBe('b');
      } finally {
        bare.client.destroy();
      }
      await other.deletePrefix('gallery');
      expect(await other.stat('gallery/p/thumb.jpg')).toBeNull();
      expect(await s3Store.stat('gallery/p/thumb.jpg')).not.toBeNull();
    } finally {
      other.client.destroy();
    }
  });

  it('deletes a prefix page by page', async () => {
    const paged = new S3BlobStore(await import('@aws-sdk/client-s3'), s3Store.client, s3.settings('kiln-test', 'paged'), 2);
    for (let i = 0; i < 5; i++) await paged.put(`orders/big/${i}.jpg`, Buffer.from(String(i)), 'image/jpeg');
    const before = s3.requests.length;
    await paged.deletePrefix('orders/big');
    for (let i = 0; i < 5; i++) expect(await paged.stat(`orders/big/${i}.jpg`)).toBeNull();
    const asked = s3.requests.slice(before);
    // 2 + 2 + 1 keys: three lists, each followed by its batch delete.
    expect(asked.filter((r) => r.startsWith('GET /kiln-test/?list-type=2')).length).toBe(3);
    expect(asked.filter((r) => r.startsWith('POST /kiln-test/?delete')).length).toBe(3);
  });

  it('lists a prefix page by page, under its own prefix only', async () => {
    const paged = new S3BlobStore(await import('@aws-sdk/client-s3'), s3Store.client, s3.settings('kiln-test', 'paged-list'), 2);
    for (let i = 0; i < 5; i++) await paged.put(`orders/many/${i}.jpg`, Buffer.from(String(i)), 'image/jpeg');
    await s3Store.put('orders/many/not-this-deployment.jpg', Buffer.from('n'), 'image/jpeg');
    const before = s3.requests.length;
    const keys: string[] = [];
    for await (const blob of paged.list('orders/many')) keys.push(blob.key);
    expect(keys.sort()).toEqual([0, 1, 2, 3, 4].map((i) => `orders/many/${i}.jpg`));
    // 2 + 2 + 1 keys: the second and third lists carry the continuation token.
    const lists = s3.requests.slice(before).filter((r) => r.startsWith('GET /kiln-test/?') && r.includes('list-type=2'));
    expect(lists.length).toBe(3);
    expect(lists.filter((r) => r.includes('continuation-token=')).length).toBe(2);
  });

  it('gives up on a store that takes the connection and never answers, instead of hanging the upload', async () => {
    // Takes each connection, reads and says nothing; counts the connections the client hangs up.
    let connections = 0;
    let hungUp = 0;
    let threeHungUp!: () => void;
    const allThree = new Promise<void>((resolve) => (threeHungUp = resolve));
    const silent = createServer((socket) => {
      connections++;
      socket.on('error', () => undefined).resume();
      socket.once('close', () => ++hungUp === 3 && threeHungUp());
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const hung = await createS3BlobStore({ ...s3.settings('kiln-test'), endpoint: `http://127.0.0.1:${(silent.address() as AddressInfo).port}` }, 200);
    try {
      // Without the 200 ms idle limit each attempt would wait the default 30 s, far past this test's
      // timeout: a limit that is not applied fails here by timing out, not by a measured duration.
      await expect(hung.put('gallery/h/thumb.jpg', Buffer.from('x'), 'image/jpeg')).rejects.toThrow(/timed out/);
      // Three attempts (the SDK's retries), each on a connection of its own that Kiln's side gave up.
      await allThree;
      expect(connections).toBe(3);
    } finally {
      hung.client.destroy();
      silent.close();
    }
  }, 10_000);

  it('fails its health check when the bucket does not exist', async () => {
    const missing = await createS3BlobStore(s3.settings('no-such-bucket'));
    try {
      await expect(missing.healthCheck()).rejects.toThrow();
      // A broken configuration is an error, not a missing image.
      await expect(missing.read('gallery/x/thumb.jpg')).rejects.toMatchObject({ name: 'NoSuchBucket' });
    } finally {
      missing.client.destroy();
    }
  });
});

describe('CachingBlobStore', () => {
  it('answers small blobs from memory after the first read, and forgets them on delete', async () => {
    const { CachingBlobStore } = await import('../../src/platform/blobs/cached.js');
    const inner = new FsBlobStore(path.join(dir, 'cached'), tmp);
    let reads = 0;
    const counting = Object.assign(Object.create(inner) as FsBlobStore, {
      readAll: async (key: string) => {
        reads++;
        return inner.readAll(key);
      },
    });
    const cached = new CachingBlobStore(counting, { maxItemBytes: 10 });
    await cached.put('gallery/c/small.jpg', Buffer.from('tiny'), 'image/jpeg');
    await cached.put('gallery/c/big.jpg', Buffer.from('more than ten bytes'), 'image/jpeg');
    expect((await cached.readAll('gallery/c/small.jpg')).toString()).toBe('tiny');
    expect((await cached.readAll('gallery/c/small.jpg')).toString()).toBe('tiny');
    expect(reads).toBe(1);
    await cached.readAll('gallery/c/big.jpg');
    await cached.readAll('gallery/c/big.jpg');
    expect(reads).toBe(3);
    await cached.delete('gallery/c/small.jpg');
    await expect(cached.readAll('gallery/c/small.jpg')).rejects.toMatchObject({ status: 404 });
  });
});
