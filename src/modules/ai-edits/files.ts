/**
 * The files of AI edits: a client's uploads (PNG or JPEG by content) and
 * the results jobs produce, both stored through the shared image engine as
 * JPEG variants under `ai-edits/<file_id>/<size>.jpg`, both served to their
 * owner only at `/api/v1/files/<file_id>`.
 *
 * Commit order as everywhere: blobs first, then the row; a failure after
 * the first blob removes the blobs again.
 */
import { holdAccount } from '../../auth/account-hold.js';
import type { Principal } from '../../auth/principal.js';
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { NotFound, ValidationFailed } from '../../errors.js';
import { newId } from '../../ids.js';
import { discardStaged, type ReceiveUpload, type StagedUpload } from '../../images/ingest.js';
import type { ImageType } from '../../images/sniff.js';
import { imageRowFields, storeRendered, type StoredVariant } from '../../images/store.js';
import { BLOB_DELETES_AT_ONCE, forEachLimited } from '../../platform/concurrency.js';
import * as repo from './repo.js';

export const UPLOAD_SIZES = ['original'] as const;
export const RESULT_SIZES = ['original', 'medium', 'thumb'] as const;
export type FileSize = (typeof RESULT_SIZES)[number];

/** The types the image model takes and Pictoora accepted; WebP and the rest are refused, and the refusal names these two. */
const UPLOAD_TYPES: ReadonlySet<ImageType> = new Set<ImageType>(['png', 'jpeg']);

export type { StoredVariant };

export const FILE_URL_PREFIX = '/api/v1/files/';
const ID = /^[A-Za-z0-9_-]{1,64}$/;

export function fileUrl(fileId: string): string {
  return `${FILE_URL_PREFIX}${fileId}`;
}

export function blobKey(fileId: string, size: FileSize): string {
  return `ai-edits/${fileId}/${size}.jpg`;
}

/**
 * Renders `sizes` from a staged image, writes them, then lets `commit` write
 * the rows (its failure removes the blobs). Returns the row it committed.
 */
export async function storeImage(
  ctx: Context,
  staged: StagedUpload,
  file: Pick<repo.FileRow, 'owner_id' | 'kind'>,
  sizes: readonly FileSize[],
  commit: (row: repo.FileRow) => Promise<void>,
): Promise<repo.FileRow> {
  const fileId = newId();
  const options = { maxImagePixels: ctx.config.maxImagePixels, jpegQuality: ctx.config.jpegQuality };
  return storeRendered(ctx, staged, sizes, (size) => blobKey(fileId, size), options, async (stored) => {
    const row: repo.FileRow = {
      file_id: fileId,
      ...file,
      ...imageRowFields(staged, stored),
      created_at: isoNow(ctx.clock),
    };
    await commit(row);
    return row;
  });
}

export interface UploadedFile {
  file_id: string;
  path: string;
  url: string;
}

export async function uploadFile(ctx: Context, principal: Principal, receive: ReceiveUpload): Promise<UploadedFile> {
  const staged = await receive({ tmpDir: ctx.tmpDir, maxBytes: ctx.config.maxUploadSize, accept: UPLOAD_TYPES });
  try {
    const row = await storeImage(ctx, staged, { owner_id: principal.userId, kind: 'upload' }, UPLOAD_SIZES, (r) =>
      ctx.db.kysely.transaction().execute(async (tx) => {
        await holdAccount(ctx.db, tx, principal);
        await repo.insertFile(tx, r);
      }),
    );
    return { file_id: row.file_id, path: blobKey(row.file_id, 'original'), url: fileUrl(row.file_id) };
  } finally {
    await discardStaged(staged);
  }
}

/**
 * The file id in a Kiln file url: `/api/v1/files/<id>`, or the same path on
 * this very host (`host` as the request named it). Anything else is not
 * ours, and Kiln never fetches a url from elsewhere.
 */
export function fileIdOf(url: string, host: string | undefined): string | undefined {
  let pathname = url;
  if (!url.startsWith('/')) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return undefined;
    }
    const sameHost = host !== undefined && parsed.host.toLowerCase() === host.toLowerCase();
    if (!['http:', 'https:'].includes(parsed.protocol) || !sameHost || parsed.search !== '' || parsed.username !== '') return undefined;
    pathname = parsed.pathname;
  }
  if (!pathname.startsWith(FILE_URL_PREFIX)) return undefined;
  const id = pathname.slice(FILE_URL_PREFIX.length);
  return ID.test(id) ? id : undefined;
}

/** The caller's own upload behind `url` (a `url` /upload answered); 422 naming `field` otherwise. */
export async function ownUpload(ctx: Context, principal: Principal, url: string, field: string, host: string | undefined): Promise<repo.FileRow> {
  const fileId = fileIdOf(url, host);
  const row = fileId === undefined ? undefined : await repo.findFile(ctx.db.kysely, fileId);
  if (!row || row.kind !== 'upload' || row.owner_id !== principal.userId) throw notYourUpload(field);
  return row;
}

export function notYourUpload(field: string): ValidationFailed {
  return new ValidationFailed(`${field} must be the url of one of your uploads (as /api/v1/upload answered it).`, [
    { field: `body.${field}`, message: 'is not one of your uploads' },
  ], 'not_your_upload');
}

export interface ServableFile {
  fileId: string;
  createdAt: Date;
  variant: StoredVariant;
  key: string;
}

/** One size of a file for its owner; someone else's file is 404, exactly like a missing one. */
export async function servableFile(ctx: Context, principal: Principal, fileId: string, size: FileSize): Promise<ServableFile> {
  const row = ID.test(fileId) ? await repo.findFile(ctx.db.kysely, fileId) : undefined;
  if (!row || row.owner_id !== principal.userId) throw new NotFound('No such file.', 'file_not_found');
  const variant = (JSON.parse(row.variants) as Partial<Record<FileSize, StoredVariant>>)[size];
  if (!variant) throw new NotFound(`This file has no ${size} size.`, 'size_not_found');
  return { fileId, createdAt: new Date(row.created_at), variant, key: blobKey(fileId, size) };
}

/** The bytes of a stored upload, for the model. */
export async function readOriginal(ctx: Context, fileId: string): Promise<Buffer> {
  return ctx.blobs.readAll(blobKey(fileId, 'original'));
}

/** Removes files' blobs once their rows are gone; a blob left behind is an orphan that no row points at, not an error. */
export async function deleteBlobsOf(ctx: Context, fileIds: readonly string[]): Promise<void> {
  await forEachLimited(fileIds, BLOB_DELETES_AT_ONCE, (id) =>
    ctx.blobs.deletePrefix(`ai-edits/${id}`).catch((err: unknown) => ctx.log.warn({ err, fileId: id }, 'blob delete failed')),
  );
}
