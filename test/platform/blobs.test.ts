import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { afterAll, describe, expect, it } from 'vitest';
import { assertKey } from '../../src/platform/blobs/index.js';
import { FsBlobStore } from '../../src/platform/blobs/fs.js';
import { tempDataDir } from '../helpers/config.js';

const { dir, cleanup } = tempDataDir();
afterAll(cleanup);
const tmp = path.join(dir, 'tmp');
const store = new FsBlobStore(path.join(dir, 'blobs'), tmp);

describe('FsBlobStore', () => {
  it('moves a finished file into place and reads it back, whole and by range', async () => {
    await mkdir(tmp, { recursive: true });
    const local = path.join(tmp, 'upload');
    await writeFile(local, 'hello world');
    await store.putFile('gallery/abc/original.jpg', local, 'image/jpeg');
    expect(await readdir(tmp)).toEqual([]);
    expect((await store.readAll('gallery/abc/original.jpg')).toString()).toBe('hello world');
    expect(await text(await store.read('gallery/abc/original.jpg', { start: 6, end: 10 }))).toBe('world');
    expect((await store.stat('gallery/abc/original.jpg'))?.size).toBe(11);
  });

  it('reports a missing blob as absent', async () => {
    expect(await store.stat('gallery/none/x.jpg')).toBeNull();
    await expect(store.read('gallery/none/x.jpg')).rejects.toMatchObject({ status: 404 });
  });

  it('deletes one blob or a whole prefix', async () => {
    await store.put('orders/o1/a.jpg', Buffer.from('a'), 'image/jpeg');
    await store.put('orders/o1/b.jpg', Buffer.from('b'), 'image/jpeg');
    await store.delete('orders/o1/a.jpg');
    expect(await store.stat('orders/o1/a.jpg')).toBeNull();
    await store.deletePrefix('orders/o1');
    expect(await store.stat('orders/o1/b.jpg')).toBeNull();
  });

  it.each(['../etc/passwd', '/abs', 'gallery/../x', 'a//b', 'Gallery/x', 'gallery/x y', ''])('refuses the key %j', (key) => {
    expect(() => assertKey(key)).toThrow();
  });

  it('passes its health check', async () => {
    await expect(store.healthCheck()).resolves.toBeUndefined();
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
