/**
 * A BlobStore in front of another that keeps small blobs' bytes in memory.
 * Thumbnails and the like are read far more often than written and never
 * change under their key, so a hot one is served from memory without an
 * open/read/close per request. Entries expire after a minute, so a delete
 * made by another process is noticed here within that time.
 */
import type { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { LRU_TTL_RESOLUTION_MS } from '../cache/index.js';
import type { BlobInfo, BlobStore, ByteRange, ListedBlob } from './index.js';

export interface BlobCacheOptions {
  /** Bytes held in all (default 32 MiB). */
  maxBytes?: number;
  /** Largest blob kept (default 256 KiB); bigger ones are always streamed. */
  maxItemBytes?: number;
  ttlMs?: number;
}

export class CachingBlobStore implements BlobStore {
  readonly kind: string;
  readonly maxItemBytes: number;
  private readonly bytes: LRUCache<string, Buffer>;

  constructor(
    private readonly inner: BlobStore,
    options: BlobCacheOptions = {},
  ) {
    this.kind = inner.kind;
    this.maxItemBytes = options.maxItemBytes ?? 256 * 1024;
    this.bytes = new LRUCache<string, Buffer>({
      maxSize: options.maxBytes ?? 32 * 1024 * 1024,
      sizeCalculation: (b) => Math.max(1, b.length),
      ttl: options.ttlMs ?? 60_000,
      ttlResolution: LRU_TTL_RESOLUTION_MS,
    });
  }

  async putFile(key: string, localPath: string, contentType: string): Promise<void> {
    this.bytes.delete(key);
    await this.inner.putFile(key, localPath, contentType);
  }

  async put(key: string, body: Buffer, contentType: string): Promise<void> {
    this.bytes.delete(key);
    await this.inner.put(key, body, contentType);
  }

  stat(key: string): Promise<BlobInfo | null> {
    return this.inner.stat(key);
  }

  read(key: string, range?: ByteRange): Promise<Readable> {
    return this.inner.read(key, range);
  }

  /** Bytes a previous readAll left in memory, for an answer that must not wait on I/O. */
  peek(key: string): Buffer | undefined {
    return this.bytes.get(key);
  }

  /** Small blobs come from memory after their first read. */
  async readAll(key: string): Promise<Buffer> {
    const hit = this.bytes.get(key);
    if (hit) return hit;
    const data = await this.inner.readAll(key);
    if (data.length <= this.maxItemBytes) this.bytes.set(key, data);
    return data;
  }

  forget(key: string): void {
    this.bytes.delete(key);
  }

  async delete(key: string): Promise<void> {
    this.bytes.delete(key);
    await this.inner.delete(key);
  }

  async deletePrefix(prefix: string): Promise<void> {
    for (const key of this.bytes.keys()) if (key.startsWith(`${prefix}/`)) this.bytes.delete(key);
    await this.inner.deletePrefix(prefix);
  }

  list(prefix: string): AsyncIterable<ListedBlob> {
    return this.inner.list(prefix);
  }

  async removeEmptyDirectories(prefix: string, before: Date, dryRun: boolean): Promise<string[]> {
    return this.inner.removeEmptyDirectories ? this.inner.removeEmptyDirectories(prefix, before, dryRun) : [];
  }

  healthCheck(): Promise<void> {
    return this.inner.healthCheck();
  }
}
