/**
 * Galleries: projects of images, each image stored once per size, one
 * image per project being its primary (cover). Owns the rules of
 * docs/api.md; routes.ts only speaks HTTP.
 *
 * Commit order: variant blobs first, then the rows in one transaction that
 * holds the project's row lock. A crash between the two leaves orphan
 * blobs, never a row without its files; a failure after the blobs were
 * written removes them.
 */
import type { LRUCache } from 'lru-cache';
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { NotFound } from '../../errors.js';
import { newId } from '../../ids.js';
import { discardStaged, type ReceiveUpload } from '../../images/ingest.js';
import { deleteBlobs, imageRowFields, storeRendered } from '../../images/store.js';
import { BLOB_DELETES_AT_ONCE, forEachLimited } from '../../platform/concurrency.js';
import { holdAccount } from '../../auth/account-hold.js';
import type { Principal } from '../../auth/principal.js';
import { assertCanRead, assertMayAskToRead, assertProjectId, canWrite, imageNotFound, projectNotFound } from './access.js';
import { blobKey, GALLERY_SIZES, IMAGE_GONE, imageFileOf, imageUrls, servedFilesOf, type GalleryImage, type ImageFile } from './images.js';
import * as repo from './repo.js';

/**
 * A project's new updated_at: now, or the one it has when that is later (a
 * process whose clock is behind). It never goes back, so neither does the
 * thumbnail's Last-Modified, which is at least this time.
 */
function touched(project: { updated_at: string }, now: string): string {
  return project.updated_at > now ? project.updated_at : now;
}

export class GalleryService {
  /**
   * Variants never change, so an image's metadata can be cached. Entries
   * live a minute: a delete in another process is then noticed at the
   * latest a minute later, and meanwhile its blobs are gone (404).
   */
  private readonly files: LRUCache<string, ImageFile>;

  constructor(private readonly ctx: Context) {
    this.files = servedFilesOf(ctx);
  }

  assertProjectId(projectId: string): void {
    assertProjectId(projectId);
  }

  private assertMayAskToRead(principal: Principal | null): void {
    assertMayAskToRead(this.publicRead, principal);
  }

  private assertCanRead(principal: Principal | null, ownerId: string, hidden = projectNotFound): void {
    assertCanRead(this.publicRead, principal, ownerId, hidden);
  }

  get publicRead(): boolean {
    return this.ctx.config.galleryPublicRead;
  }

  async upload(principal: Principal, projectId: string, receive: ReceiveUpload): Promise<GalleryImage & { project_id: string }> {
    const { ctx } = this;
    this.assertProjectId(projectId);
    // Refuse early, before reading the body, when the project is someone else's.
    const existing = await repo.findProject(ctx.db.kysely, projectId);
    if (existing && !canWrite(principal, existing.owner_id)) throw projectNotFound();

    const staged = await receive({ tmpDir: ctx.tmpDir, maxBytes: ctx.config.maxUploadSize });
    const imageId = newId();
    const options = { maxImagePixels: ctx.config.maxImagePixels, jpegQuality: ctx.config.jpegQuality };
    try {
      return await storeRendered(ctx, staged, GALLERY_SIZES, (size) => blobKey(imageId, size), options, async (stored) => {
        const now = isoNow(ctx.clock);
        const isPrimary = await ctx.db.kysely.transaction().execute(async (tx) => {
          await holdAccount(ctx.db, tx, principal);
          const project = await repo.claimAndLockProject(ctx.db, tx, projectId, principal.userId, now);
          if (!canWrite(principal, project.owner_id)) throw projectNotFound();
          await repo.insertImage(tx, {
            image_id: imageId,
            project_id: projectId,
            seq: project.next_seq,
            ...imageRowFields(staged, stored),
            created_at: now,
          });
          const becomesPrimary = project.primary_image_id === null;
          await repo.updateProject(tx, projectId, {
            next_seq: project.next_seq + 1,
            updated_at: touched(project, now),
            ...(becomesPrimary ? { primary_image_id: imageId } : {}),
          });
          return becomesPrimary;
        });
        return {
          image_id: imageId,
          project_id: projectId,
          is_primary: isPrimary,
          created_at: now,
          width: stored.width,
          height: stored.height,
          bytes: staged.bytes,
          sha256: staged.sha256,
          urls: imageUrls(projectId, imageId),
        };
      });
    } finally {
      await discardStaged(staged);
    }
  }

  async list(principal: Principal | null, projectId: string) {
    this.assertMayAskToRead(principal);
    this.assertProjectId(projectId);
    const listing = await repo.listProject(this.ctx.db.kysely, projectId);
    if (!listing) throw projectNotFound();
    this.assertCanRead(principal, listing.project.owner_id);
    const primary = listing.project.primary_image_id;
    return {
      project_id: projectId,
      primary_image_id: primary,
      images: listing.images.map((row) => ({
        image_id: row.image_id,
        is_primary: row.image_id === primary,
        created_at: row.created_at,
        width: row.width,
        height: row.height,
        bytes: row.bytes,
        sha256: row.sha256,
        urls: imageUrls(projectId, row.image_id),
      })),
    };
  }

  /** The stored file of one image, for serving; cached so a hot GET costs no query. */
  async imageFile(principal: Principal | null, projectId: string, imageId: string): Promise<ImageFile> {
    this.assertMayAskToRead(principal);
    this.assertProjectId(projectId);
    let file = this.cachedFile(projectId, imageId);
    if (!file) {
      const project = await repo.findProject(this.ctx.db.kysely, projectId);
      const row = project ? await repo.findImage(this.ctx.db.kysely, projectId, imageId) : undefined;
      if (!project || !row) throw imageNotFound();
      file = imageFileOf(row, project.owner_id);
      this.files.set(imageId, file);
    }
    this.assertCanRead(principal, file.ownerId, imageNotFound);
    return file;
  }

  /**
   * The image's file when it is cached and anyone may read it: what a hot
   * path needs to answer without the database. Undefined sends the request
   * the long way (imageFile), which also fills the cache.
   */
  cachedPublicFile(projectId: string, imageId: string): ImageFile | undefined {
    return this.publicRead ? this.cachedFile(projectId, imageId) : undefined;
  }

  /**
   * Loads the image's file into the cache when anyone may read it, for a hot
   * path about to answer. A missing image, or a failing database, gives
   * undefined: the route meets it again and answers it.
   */
  async warmPublicFile(projectId: string, imageId: string): Promise<ImageFile | undefined> {
    if (!this.publicRead) return undefined;
    try {
      return await this.imageFile(null, projectId, imageId);
    } catch {
      return undefined;
    }
  }

  private cachedFile(projectId: string, imageId: string): ImageFile | undefined {
    const file = this.files.get(imageId);
    return file?.projectId === projectId ? file : undefined;
  }

  /**
   * The primary image's file; never cached, since the primary can change.
   * `lastModified` is the later of the image's upload and the project's last
   * change (updated_at, set by every change of the primary): when the primary
   * moves to an older image, the thumbnail's Last-Modified still moves on, so
   * an If-Modified-Since of the previous picture is not answered 304.
   */
  async primaryFile(principal: Principal | null, projectId: string): Promise<{ imageId: string; file: ImageFile; lastModified: Date }> {
    this.assertMayAskToRead(principal);
    this.assertProjectId(projectId);
    const found = await repo.findPrimaryImage(this.ctx.db.kysely, projectId);
    if (!found) throw projectNotFound();
    this.assertCanRead(principal, found.owner_id);
    if (!found.image) throw new NotFound('This project has no image.', 'no_image');
    const file = imageFileOf(found.image, found.owner_id);
    const changed = new Date(found.updated_at);
    return { imageId: found.image.image_id, file, lastModified: changed > file.createdAt ? changed : file.createdAt };
  }

  async remove(principal: Principal, projectId: string, imageId: string): Promise<void> {
    const { ctx } = this;
    this.assertProjectId(projectId);
    await ctx.db.kysely.transaction().execute(async (tx) => {
      const project = await repo.lockProject(ctx.db, tx, projectId);
      if (!project || !canWrite(principal, project.owner_id)) throw imageNotFound();
      const image = await repo.findImage(tx, projectId, imageId);
      if (!image) throw imageNotFound();
      await repo.deleteImage(tx, imageId);
      const changes: Parameters<typeof repo.updateProject>[2] = { updated_at: touched(project, isoNow(ctx.clock)) };
      if (project.primary_image_id === imageId) changes.primary_image_id = await repo.firstImageId(tx, projectId);
      await repo.updateProject(tx, projectId, changes);
    });
    await ctx.broadcast.publish(IMAGE_GONE, imageId);
    await this.deleteBlobs(imageId);
  }

  async setPrimary(principal: Principal, projectId: string, imageId: string) {
    const { ctx } = this;
    this.assertProjectId(projectId);
    await ctx.db.kysely.transaction().execute(async (tx) => {
      const project = await repo.lockProject(ctx.db, tx, projectId);
      if (!project || !canWrite(principal, project.owner_id)) throw imageNotFound();
      if (!(await repo.findImage(tx, projectId, imageId))) throw imageNotFound();
      await repo.updateProject(tx, projectId, { primary_image_id: imageId, updated_at: touched(project, isoNow(ctx.clock)) });
    });
    return { project_id: projectId, primary_image_id: imageId };
  }

  private async deleteBlobs(imageId: string): Promise<void> {
    await deleteBlobs(this.ctx.blobs, this.ctx.log, GALLERY_SIZES.map((s) => blobKey(imageId, s)));
  }

  /** Removes every project the user owns, with its images and files (account deletion). */
  async deleteAllOf(userId: string): Promise<void> {
    const { ctx } = this;
    for (const projectId of await repo.projectsOwnedBy(ctx.db.kysely, userId)) {
      const imageIds = await ctx.db.kysely.transaction().execute(async (tx) => {
        await repo.lockProject(ctx.db, tx, projectId);
        const ids = await repo.imageIdsOf(tx, projectId);
        await repo.deleteProject(tx, projectId);
        return ids;
      });
      await forEachLimited(imageIds, BLOB_DELETES_AT_ONCE, async (id) => {
        await ctx.broadcast.publish(IMAGE_GONE, id);
        await this.deleteBlobs(id);
      });
    }
  }
}

export async function deleteUserGalleries(ctx: Context, userId: string): Promise<void> {
  await new GalleryService(ctx).deleteAllOf(userId);
}
