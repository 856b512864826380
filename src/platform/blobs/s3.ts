/**
 * Blobs in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Ceph, …),
 * behind the same BlobStore interface as the local disk. A PUT is atomic in
 * S3 (a reader sees the old object or the new one, never half), so there is
 * no temp-then-rename here. Keys are the server's own (`assertKey`), under an
 * optional prefix, so one bucket can hold several deployments.
 *
 * The SDK is loaded only when STORAGE=s3 (createS3BlobStore), as the other
 * optional services are: a server on the local disk never pays for it.
 * Checksums are computed only where S3 requires them (DeleteObjects), so any
 * S3-compatible store that predates AWS's default CRC32 headers accepts the
 * requests.
 */
import { createReadStream } from 'node:fs';
import { stat as statFile, unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { NotFound } from '../../errors.js';
import { assertKey, roundTrip, type BlobInfo, type BlobStore, type ByteRange, type ListedBlob } from './index.js';

type S3Sdk = typeof import('@aws-sdk/client-s3');

export interface S3Settings {
  bucket: string;
  region: string;
  /** An S3-compatible endpoint; unset for AWS itself. */
  endpoint: string | undefined;
  /** Both or neither; neither: the SDK's own chain (AWS_* variables, profiles, instance roles). */
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  /** bucket in the path (`endpoint/bucket/key`) rather than in the host name; most S3-compatible stores want it. */
  forcePathStyle: boolean;
  /** Put before every key: "" or ending in "/". */
  prefix: string;
}

/** At most this many keys per list and per batch delete, S3's own limit. */
const PAGE = 1000;
/** How long a connection to the store may take to open, and a request may go without a byte either way. */
const CONNECT_TIMEOUT_MS = 5_000;
const IDLE_TIMEOUT_MS = 30_000;

/**
 * The object is not there: NoSuchKey from a GET, NotFound from a HEAD (whose
 * answer has no body to tell a missing key from a missing bucket). A GET's
 * NoSuchBucket is a broken configuration, and stays an error.
 */
function isMissing(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  return name === 'NoSuchKey' || name === 'NotFound';
}

export class S3BlobStore implements BlobStore {
  readonly kind = 's3';

  constructor(
    private readonly sdk: S3Sdk,
    readonly client: S3Client,
    private readonly settings: S3Settings,
    /** Keys per list page and per batch delete; smaller only in tests, to cover the paging. */
    private readonly page = PAGE,
  ) {}

  private objectKey(key: string): string {
    assertKey(key);
    return `${this.settings.prefix}${key}`;
  }

  async putFile(key: string, localPath: string, contentType: string): Promise<void> {
    const objectKey = this.objectKey(key);
    const { size } = await statFile(localPath);
    // A file stream needs its length up front: S3 takes no chunked upload without one.
    await this.client.send(new this.sdk.PutObjectCommand({ Bucket: this.settings.bucket, Key: objectKey, Body: createReadStream(localPath), ContentLength: size, ContentType: contentType }));
    await unlink(localPath);
  }

  async put(key: string, body: Buffer, contentType: string): Promise<void> {
    await this.client.send(new this.sdk.PutObjectCommand({ Bucket: this.settings.bucket, Key: this.objectKey(key), Body: body, ContentType: contentType }));
  }

  async stat(key: string): Promise<BlobInfo | null> {
    try {
      const head = await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.settings.bucket, Key: this.objectKey(key) }));
      return { size: head.ContentLength ?? 0, modifiedAt: head.LastModified ?? new Date(0) };
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable> {
    try {
      const got = await this.client.send(
        new this.sdk.GetObjectCommand({ Bucket: this.settings.bucket, Key: this.objectKey(key), ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }),
      );
      // In Node the body is an http.IncomingMessage: a Readable.
      return got.Body as Readable;
    } catch (err) {
      if (isMissing(err)) throw new NotFound('The file is missing.');
      throw err;
    }
  }

  async readAll(key: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.read(key)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async delete(key: string): Promise<void> {
    // S3 answers a delete of a missing key with success, as the local disk does.
    await this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.settings.bucket, Key: this.objectKey(key) }));
  }

  async deletePrefix(prefix: string): Promise<void> {
    const listed = `${this.objectKey(prefix)}/`;
    // Each page is deleted before the next is asked for; a key deleted meanwhile is simply not listed.
    for (;;) {
      const page = await this.client.send(new this.sdk.ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: listed, MaxKeys: this.page }));
      const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
      if (keys.length > 0) {
        const done = await this.client.send(new this.sdk.DeleteObjectsCommand({ Bucket: this.settings.bucket, Delete: { Objects: keys, Quiet: true } }));
        const failed = done.Errors ?? [];
        if (failed.length > 0) throw new Error(`the object store did not delete ${failed.length} object(s) under ${listed}: ${failed[0]?.Code ?? 'unknown'}`);
      }
      if (!page.IsTruncated) return;
    }
  }

  async *list(prefix: string): AsyncIterable<ListedBlob> {
    const listed = `${this.objectKey(prefix)}/`;
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new this.sdk.ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: listed, MaxKeys: this.page, ...(token ? { ContinuationToken: token } : {}) }),
      );
      for (const object of page.Contents ?? []) {
        if (object.Key) yield { key: object.Key.slice(this.settings.prefix.length), modifiedAt: object.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  healthCheck(): Promise<void> {
    return roundTrip(this);
  }
}

/** The bucket store with its own client; destroy the client with the context. `idleTimeoutMs` is shorter only in tests. */
export async function createS3BlobStore(settings: S3Settings, idleTimeoutMs = IDLE_TIMEOUT_MS): Promise<S3BlobStore> {
  const sdk = await import('@aws-sdk/client-s3');
  const client = new sdk.S3Client({
    region: settings.region,
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    forcePathStyle: settings.forcePathStyle,
    ...(settings.accessKeyId && settings.secretAccessKey ? { credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } } : {}),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // The SDK waits forever by default: a store that stops answering would hang every upload. An idle
    // limit rather than a whole-request one, so that a large original read slowly by its client is not cut off.
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: idleTimeoutMs },
  });
  return new S3BlobStore(sdk, client, settings);
}
