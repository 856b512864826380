/**
 * SQL for product pictures and for the single-flight lease on a barcode.
 * The lease row names the one job that is asking the provider right now;
 * it expires on its own (`locked_until`), so a job whose process died does
 * not block its barcode for longer than one handler timeout.
 */
import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../../platform/db/index.js';
import type { Database, ProductImageFetchesTable, ProductImagesTable } from '../../platform/db/schema.js';

export type ProductImageRow = ProductImagesTable;
export type FetchLeaseRow = ProductImageFetchesTable;

export async function findImage(db: Kysely<Database>, eanCode: string): Promise<ProductImageRow | undefined> {
  return db.selectFrom('product_images').selectAll().where('ean_code', '=', eanCode).executeTakeFirst();
}

export async function findLease(db: Kysely<Database>, eanCode: string): Promise<FetchLeaseRow | undefined> {
  return db.selectFrom('product_image_fetches').selectAll().where('ean_code', '=', eanCode).executeTakeFirst();
}

/**
 * Takes the lease for `jobId` when nobody holds it, it ran out, it ended in
 * an error, or this job already holds it. One conditional write each way,
 * so two jobs racing for a free barcode cannot both win.
 */
export async function tryTakeLease(db: Kysely<Database>, eanCode: string, jobId: string, now: string, lockedUntil: string): Promise<boolean> {
  try {
    await db
      .insertInto('product_image_fetches')
      .values({ ean_code: eanCode, job_id: jobId, locked_until: lockedUntil, error: null, updated_at: now })
      .execute();
    return true;
  } catch (err) {
    if (!isUniqueViolation(err)) throw err;
  }
  const r = await db
    .updateTable('product_image_fetches')
    .set({ job_id: jobId, locked_until: lockedUntil, error: null, updated_at: now })
    .where('ean_code', '=', eanCode)
    .where((w) => w.or([w('job_id', '=', jobId), w('locked_until', '<', now), w('error', 'is not', null)]))
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Records the holder's failure (permanent, or its last attempt's) so the jobs waiting on it end the same way. */
export async function failLease(db: Kysely<Database>, eanCode: string, jobId: string, error: string, now: string): Promise<void> {
  await db
    .updateTable('product_image_fetches')
    .set({ error, locked_until: now, updated_at: now })
    .where('ean_code', '=', eanCode)
    .where('job_id', '=', jobId)
    .execute();
}

/**
 * Deletes the leases that ran out before `before`: failed ones (a failure
 * ends its lease at once) and those of holders that died. A job that finds
 * none takes a new one, so nothing waits on these; resolves with how many.
 */
export async function deleteDeadLeases(db: Kysely<Database>, before: string): Promise<number> {
  const r = await db.deleteFrom('product_image_fetches').where('locked_until', '<', before).executeTakeFirst();
  return Number(r.numDeletedRows);
}

export async function releaseLease(db: Kysely<Database>, eanCode: string, jobId: string): Promise<void> {
  await db.deleteFrom('product_image_fetches').where('ean_code', '=', eanCode).where('job_id', '=', jobId).execute();
}

/** Stores the picture and lets go of the lease in one transaction. */
export async function insertImageAndRelease(db: Kysely<Database>, row: ProductImageRow): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx.insertInto('product_images').values(row).execute();
    await tx.deleteFrom('product_image_fetches').where('ean_code', '=', row.ean_code).execute();
  });
}
