/**
 * SQL for projects and their images. The project row is the lock that
 * serialises every change to one project's images, so the primary-image
 * invariant (exactly one while images remain) holds across processes.
 */
import type { Kysely, Transaction } from 'kysely';
import { lockForUpdate, type Db } from '../../platform/db/index.js';
import type { Database, GalleryImagesTable, ProjectsTable } from '../../platform/db/schema.js';

export type ImageRow = GalleryImagesTable;
export type ProjectRow = ProjectsTable;
type Tx = Transaction<Database> | Kysely<Database>;

export async function findProject(db: Tx, projectId: string): Promise<ProjectRow | undefined> {
  return db.selectFrom('projects').selectAll().where('project_id', '=', projectId).executeTakeFirst();
}

/**
 * Creates the project if it does not exist yet (the caller becomes its
 * owner), then locks its row for the rest of the transaction.
 */
export async function claimAndLockProject(db: Db, tx: Tx, projectId: string, ownerId: string, now: string): Promise<ProjectRow> {
  await tx
    .insertInto('projects')
    .values({ project_id: projectId, owner_id: ownerId, primary_image_id: null, next_seq: 1, created_at: now, updated_at: now })
    .onConflict((oc) => oc.column('project_id').doNothing())
    .execute();
  return lockForUpdate(db.dialect, tx.selectFrom('projects').selectAll().where('project_id', '=', projectId)).executeTakeFirstOrThrow();
}

export async function lockProject(db: Db, tx: Tx, projectId: string): Promise<ProjectRow | undefined> {
  return lockForUpdate(db.dialect, tx.selectFrom('projects').selectAll().where('project_id', '=', projectId)).executeTakeFirst();
}

export async function insertImage(tx: Tx, row: ImageRow): Promise<void> {
  await tx.insertInto('gallery_images').values(row).execute();
}

export async function updateProject(
  tx: Tx,
  projectId: string,
  changes: Partial<Pick<ProjectRow, 'primary_image_id' | 'next_seq' | 'updated_at'>>,
): Promise<void> {
  await tx.updateTable('projects').set(changes).where('project_id', '=', projectId).execute();
}

export async function findImage(db: Tx, projectId: string, imageId: string): Promise<ImageRow | undefined> {
  return db
    .selectFrom('gallery_images')
    .selectAll()
    .where('project_id', '=', projectId)
    .where('image_id', '=', imageId)
    .executeTakeFirst();
}

export async function deleteImage(tx: Tx, imageId: string): Promise<void> {
  await tx.deleteFrom('gallery_images').where('image_id', '=', imageId).execute();
}

/** The image that becomes primary when the primary goes: the first remaining in upload order. */
export async function firstImageId(tx: Tx, projectId: string): Promise<string | null> {
  const row = await tx
    .selectFrom('gallery_images')
    .select('image_id')
    .where('project_id', '=', projectId)
    .orderBy('seq')
    .limit(1)
    .executeTakeFirst();
  return row?.image_id ?? null;
}

/** Image columns as a LEFT JOIN returns them: all null when there is no image. */
interface JoinedImage {
  image_id: string | null;
  project_id: string | null;
  seq: number | null;
  width: number | null;
  height: number | null;
  bytes: number | null;
  sha256: string | null;
  variants: string | null;
  created_at: string | null;
}

const LISTED_COLUMNS = ['i.image_id', 'i.project_id', 'i.seq', 'i.width', 'i.height', 'i.bytes', 'i.sha256', 'i.created_at'] as const;
const IMAGE_COLUMNS = [...LISTED_COLUMNS, 'i.variants'] as const;

function joinedImage(r: JoinedImage): ImageRow | null {
  if (r.image_id === null) return null;
  // Every column is NOT NULL in the table, so a present image_id means a whole row.
  return r as ImageRow;
}

/** An image as the listing shows it: its stored files (`variants`) are not read for a listing. */
export type ListedImage = Omit<ImageRow, 'variants'>;

export interface ProjectListing {
  project: Pick<ProjectRow, 'project_id' | 'owner_id' | 'primary_image_id'>;
  images: ListedImage[];
}

/**
 * The project and its images in upload order, read by ONE statement so the
 * listing is a consistent snapshot even while other processes write.
 */
export async function listProject(db: Tx, projectId: string): Promise<ProjectListing | undefined> {
  const rows = await db
    .selectFrom('projects as p')
    .leftJoin('gallery_images as i', 'i.project_id', 'p.project_id')
    .select(['p.project_id as p_project_id', 'p.owner_id as p_owner_id', 'p.primary_image_id as p_primary_image_id', ...LISTED_COLUMNS])
    .where('p.project_id', '=', projectId)
    .orderBy('i.seq')
    .execute();
  const first = rows[0];
  if (!first) return undefined;
  // As joinedImage: a present image_id means a whole row.
  const images = rows.filter((r) => r.image_id !== null) as ListedImage[];
  return {
    project: { project_id: first.p_project_id, owner_id: first.p_owner_id, primary_image_id: first.p_primary_image_id },
    images,
  };
}

/** The project's primary image row (for the thumbnail route) and when the project last changed, in one statement. */
export async function findPrimaryImage(db: Tx, projectId: string): Promise<{ owner_id: string; updated_at: string; image: ImageRow | null } | undefined> {
  const row = await db
    .selectFrom('projects as p')
    .leftJoin('gallery_images as i', 'i.image_id', 'p.primary_image_id')
    .select(['p.owner_id', 'p.updated_at as p_updated_at', ...IMAGE_COLUMNS])
    .where('p.project_id', '=', projectId)
    .executeTakeFirst();
  if (!row) return undefined;
  return { owner_id: row.owner_id, updated_at: row.p_updated_at, image: joinedImage(row) };
}

export async function projectsOwnedBy(db: Tx, userId: string): Promise<string[]> {
  const rows = await db.selectFrom('projects').select('project_id').where('owner_id', '=', userId).execute();
  return rows.map((r) => r.project_id);
}

export async function imageIdsOf(db: Tx, projectId: string): Promise<string[]> {
  const rows = await db.selectFrom('gallery_images').select('image_id').where('project_id', '=', projectId).execute();
  return rows.map((r) => r.image_id);
}

export async function deleteProject(tx: Tx, projectId: string): Promise<void> {
  await tx.deleteFrom('gallery_images').where('project_id', '=', projectId).execute();
  await tx.deleteFrom('projects').where('project_id', '=', projectId).execute();
}
