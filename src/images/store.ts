/**
 * Writing an upload's variant blobs as one unit. Uploads commit blobs first
 * and rows second (docs/architecture.md); when anything after the first
 * blob fails, every blob written so far must go again. A BlobBatch keeps
 * that list so a module does not hand-roll it per upload.
 */
import type { Logger } from 'pino';
import type { BlobStore } from '../platform/blobs/index.js';
import type { StagedUpload } from './ingest.js';
import { renderVariants, type RenderedImage, type RenderOptions, type SizeName } from './variants.js';

export class BlobBatch {
  /** Every key a write was started for: one that failed may have left its directory on disk (or land late on S3). */
  private readonly written: string[] = [];

  constructor(
    private readonly blobs: BlobStore,
    private readonly log: Logger,
  ) {}

  /** Writes one blob; its key is remembered for rollback whether or not the write succeeds. */
  async put(key: string, data: Buffer, contentType: string): Promise<void> {
    this.written.push(key);
    await this.blobs.put(key, data, contentType);
  }

  /** Writes several blobs in parallel; those that landed are remembered even when another fails. */
  async putAll(entries: ReadonlyArray<{ key: string; data: Buffer; contentType: string }>): Promise<void> {
    const results = await Promise.allSettled(entries.map((e) => this.put(e.key, e.data, e.contentType)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** The keys this batch wrote or began to write. */
  get keys(): readonly string[] {
    return this.written;
  }

  /**
   * Removes every blob this batch wrote or began to write (deleting one that
   * is not there is a no-op, and on disk takes the directory its write made,
   * once empty). Never throws: it runs while
   * another error is on its way to the caller, and a blob it cannot remove is
   * an orphan that no row points at (logged), not a second failure.
   */
  async rollback(): Promise<void> {
    const keys = this.written.splice(0);
    await deleteBlobs(this.blobs, this.log, keys);
  }
}

/** Best-effort delete of `keys` (rows are already gone): failures are logged, not thrown. */
export async function deleteBlobs(blobs: BlobStore, log: Logger, keys: readonly string[]): Promise<void> {
  await Promise.all(keys.map((key) => blobs.delete(key).catch((err: unknown) => log.warn({ err, key }, 'blob delete failed'))));
}

/** What a row keeps of one stored size: enough to serve it (ETag, Content-Length) without reading it. */
export interface StoredVariant {
  width: number;
  height: number;
  bytes: number;
  etag: string;
}

export interface StoredImage<S extends SizeName> {
  /** Of the oriented original. */
  width: number;
  height: number;
  variants: Record<S, StoredVariant>;
  /** The rendered bytes, for a caller that looks at them further (quality checks). */
  rendered: RenderedImage<S>;
}

/** The columns every image row keeps of its upload and its stored sizes (variants as JSON). */
export interface ImageRowFields {
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  variants: string;
}

export function imageRowFields<S extends SizeName>(staged: Pick<StagedUpload, 'bytes' | 'sha256'>, stored: StoredImage<S>): ImageRowFields {
  return { width: stored.width, height: stored.height, bytes: staged.bytes, sha256: staged.sha256, variants: JSON.stringify(stored.variants) };
}

/**
 * An upload stored whole or not at all, as every module stores one: its
 * sizes rendered into blobs (renderAndStore), then `commit` writes the rows.
 * When rendering, a write or the commit fails, every blob written so far
 * goes again before the error goes on. Removing the staged file is the
 * caller's, who may still need it.
 */
export async function storeRendered<S extends SizeName, T>(
  deps: { blobs: BlobStore; log: Logger },
  staged: Pick<StagedUpload, 'path'>,
  sizes: readonly S[],
  keyOf: (size: S) => string,
  options: RenderOptions,
  commit: (stored: StoredImage<S>) => Promise<T>,
): Promise<T> {
  const batch = new BlobBatch(deps.blobs, deps.log);
  try {
    return await commit(await renderAndStore(batch, staged, sizes, keyOf, options));
  } catch (err) {
    await batch.rollback();
    throw err;
  }
}

/**
 * The upload path every module shares: render `sizes` from a staged upload
 * in one decode, write each into `batch` under `keyOf(size)`, and return what
 * the row stores. On failure the caller rolls the batch back.
 */
export async function renderAndStore<S extends SizeName>(
  batch: BlobBatch,
  staged: Pick<StagedUpload, 'path'>,
  sizes: readonly S[],
  keyOf: (size: S) => string,
  options: RenderOptions,
): Promise<StoredImage<S>> {
  const rendered = await renderVariants(staged, sizes, options);
  await batch.putAll(sizes.map((size) => ({ key: keyOf(size), data: rendered.variants[size].data, contentType: 'image/jpeg' })));
  const variants = Object.fromEntries(
    sizes.map((size) => {
      const v = rendered.variants[size];
      return [size, { width: v.width, height: v.height, bytes: v.bytes, etag: v.etag }];
    }),
  ) as Record<S, StoredVariant>;
  return { width: rendered.width, height: rendered.height, variants, rendered };
}
