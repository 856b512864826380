/**
 * Upload staging: a client's bytes stream to a temp file (random name in
 * tmpDir) while we count them, hash them (SHA-256) and keep the first bytes
 * for sniffing. Nothing is ever held whole in memory, the size limit stops
 * the stream as soon as it is crossed, and every refusal removes the temp file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { isMissing, streamToNewFile } from '../platform/files.js';
import { TooLarge, UnsupportedImage } from '../errors.js';
import { noteStaged } from './release.js';
import { IMAGE_MIME, SNIFF_BYTES, sniffImageType, type ImageType } from './sniff.js';

export interface StagedUpload {
  /** Temp file holding the upload; move it with BlobStore.putFile or remove it with discardStaged. */
  path: string;
  bytes: number;
  /** Hex SHA-256 of the bytes as received. */
  sha256: string;
  type: ImageType;
  mime: string;
}

export interface StageOptions {
  tmpDir: string;
  maxBytes: number;
  /**
   * The sniffed types this caller takes; anything else is 415 `unsupported_image`.
   * Default: every type the sniffer knows (custom orders narrow it to JPEG, PNG, WebP).
   */
  accept?: ReadonlySet<ImageType>;
}

/**
 * Stages an upload with the options given and hands it over. A service takes
 * one instead of a stream so that it decides the options and when the body is
 * read (after its own early checks), while the route keeps how the body is
 * framed, and can refuse the body after the file (platform/http/one-file.ts).
 */
export type ReceiveUpload = (opts: StageOptions) => Promise<StagedUpload>;

const TYPE_NAMES: Readonly<Record<ImageType, string>> = { jpeg: 'JPEG', png: 'PNG', webp: 'WebP', avif: 'AVIF', heic: 'HEIC' };

/** "JPEG, PNG or WebP": the accepted types as a person reads them, in the sniffer's order. */
function acceptedNames(accept: ReadonlySet<ImageType> | undefined): string {
  const names = (Object.keys(TYPE_NAMES) as ImageType[]).filter((t) => !accept || accept.has(t)).map((t) => TYPE_NAMES[t]);
  return names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names.at(-1) ?? ''}` : (names[0] ?? 'none');
}

function tooLarge(maxBytes: number): TooLarge {
  return new TooLarge(`The file is larger than the upload limit of ${maxBytes} bytes.`, 'file_too_large');
}

/** @fastify/multipart ends a file stream early and flags it when its own fileSize limit hits. */
function endedTruncated(source: NodeJS.ReadableStream | Readable): boolean {
  return (source as { truncated?: unknown }).truncated === true;
}

function isMultipartLimitError(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'FST_REQ_FILE_TOO_LARGE';
}

export async function stageUpload(source: NodeJS.ReadableStream | Readable, opts: StageOptions): Promise<StagedUpload> {
  const file = path.join(opts.tmpDir, `upload-${randomBytes(16).toString('hex')}`);
  const hash = createHash('sha256');
  const headChunks: Buffer[] = [];
  let headBytes = 0;
  let bytes = 0;

  // The generator sits between the source and the file: throwing here destroys both ends at once.
  async function* meter(input: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
    for await (const piece of input) {
      const chunk = typeof piece === 'string' ? Buffer.from(piece) : piece;
      bytes += chunk.length;
      if (bytes > opts.maxBytes) throw tooLarge(opts.maxBytes);
      hash.update(chunk);
      if (headBytes < SNIFF_BYTES) {
        headChunks.push(chunk.subarray(0, SNIFF_BYTES - headBytes));
        headBytes += Math.min(chunk.length, SNIFF_BYTES - headBytes);
      }
      yield chunk;
      noteStaged(chunk.length); // handed to the file: once written, its memory can go back (release.ts)
    }
  }

  try {
    await streamToNewFile(source, meter, file);
  } catch (err) {
    throw isMultipartLimitError(err) ? tooLarge(opts.maxBytes) : err;
  }
  try {
    if (endedTruncated(source)) throw tooLarge(opts.maxBytes);
    if (bytes === 0) throw new UnsupportedImage('The file is empty.', 'empty_file');
    const type = sniffImageType(Buffer.concat(headChunks));
    if (type === null || (opts.accept && !opts.accept.has(type))) {
      throw new UnsupportedImage(`The file is not an accepted image (${acceptedNames(opts.accept)}).`, 'unsupported_image');
    }
    return { path: file, bytes, sha256: hash.digest('hex'), type, mime: IMAGE_MIME[type] };
  } catch (err) {
    await rm(file, { force: true });
    throw err;
  }
}

/**
 * Removes a staged upload's temp file; safe to call twice or after the file
 * was moved. One `unlink`, not `rm`, which asks `lstat` first: every upload
 * ends here, and each call is a trip through the thread pool.
 */
export async function discardStaged(staged: Pick<StagedUpload, 'path'>): Promise<void> {
  try {
    await unlink(staged.path);
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
}
