/**
 * The photogrammetry pipeline (docs/pipeline.md): the rules behind the
 * routes. An upload of 8-200 photos is stored in the blob store under an
 * upload id of ours, then a `photogrammetry` job (job.ts) reconstructs a
 * model from them with COLMAP. Jobs, models and their status are visible to
 * their owner and admins only; to anyone else they do not exist (404).
 *
 * Blobs: `pipeline/<upload_id>/photos/0001.jpg …` until the job ends, then
 * `pipeline/<upload_id>/model.ply` and `model.glb`. The job row owns them:
 * its dedupe key is `photogrammetry:<upload_id>` (one live job per upload,
 * which is true anyway), which is how the orphan sweep finds the owner.
 */
import type { Multipart } from '@fastify/multipart';
import type { Kysely } from 'kysely';
import { holdAccount } from '../../auth/account-hold.js';
import type { Principal } from '../../auth/principal.js';
import type { Context } from '../../context.js';
import { Conflict, NotFound } from '../../errors.js';
import { newId } from '../../ids.js';
import type { StoredFile } from '../../images/serve.js';
import type { Database } from '../../platform/db/schema.js';
import { dedupeKeysWithJobs, type Job } from '../../platform/jobs/index.js';
import { requireColmap } from './colmap.js';
import { readPipelineUpload } from './intake.js';

export const PHOTOGRAMMETRY = 'photogrammetry';

export const STAGES = ['features', 'matching', 'mapping', 'meshing', 'export'] as const;
export type Stage = (typeof STAGES)[number];

export const MODEL_FORMATS = ['ply', 'glb'] as const;
export type ModelFormat = (typeof MODEL_FORMATS)[number];

export const MODEL_TYPES: Readonly<Record<ModelFormat, string>> = {
  glb: 'model/gltf-binary',
  // Binary PLY has no registered media type.
  ply: 'application/octet-stream',
};

export interface PipelineInput {
  upload_id: string;
  name: string | null;
  /** The photos' file names as we made them (0001.jpg …), in upload order. */
  photos: string[];
}

export interface ModelFile {
  bytes: number;
  /** Hex SHA-256 of the stored bytes. */
  etag: string;
}

export interface PipelineResult {
  stage: Stage;
  upload_id: string;
  name: string | null;
  photos: number;
  /** Photos COLMAP placed in the model. */
  registered_photos: number;
  points: number;
  /** What the model is: a sparse point cloud (docs/pipeline.md says why there is no mesh). */
  model: 'point_cloud';
  colmap: string;
  files: Record<ModelFormat, ModelFile>;
  finished_model_at: string;
}

/** The job as every job route answers it, with the stage lifted out of `result`. */
export type PipelineJob = Job & { stage: Stage | null };

export function uploadPrefix(uploadId: string): string {
  return `pipeline/${uploadId}`;
}

export function photoKey(uploadId: string, fileName: string): string {
  return `${uploadPrefix(uploadId)}/photos/${fileName}`;
}

export function modelKey(uploadId: string, format: ModelFormat): string {
  return `${uploadPrefix(uploadId)}/model.${format}`;
}

/** The finished job's result, kept beside the model so a run repeated after the photos went can still complete (reconstruction.ts). */
export function resultKey(uploadId: string): string {
  return `${uploadPrefix(uploadId)}/result.json`;
}

export function dedupeKeyOf(uploadId: string): string {
  return `${PHOTOGRAMMETRY}:${uploadId}`;
}

/** For the orphan sweep (blob-sweep.ts): of `uploadIds`, those a job row still owns. */
export async function existingUploads(db: Kysely<Database>, uploadIds: string[]): Promise<string[]> {
  const prefix = dedupeKeyOf('');
  const keys = await dedupeKeysWithJobs(db, uploadIds.map(dedupeKeyOf));
  return keys.map((key) => key.slice(prefix.length));
}

function isStage(value: unknown): value is Stage {
  return typeof value === 'string' && (STAGES as readonly string[]).includes(value);
}

export function present(job: Job): PipelineJob {
  const stage = (job.result as { stage?: unknown } | null)?.stage;
  return { ...job, stage: isStage(stage) ? stage : null };
}

function canSee(principal: Principal, job: Job): boolean {
  return principal.isAdmin || job.user_id === principal.userId;
}

export class PipelineService {
  constructor(private readonly ctx: Context) {}

  /**
   * Stores the photos, then enqueues the job: a job runs wherever a worker
   * is, so its photos must be in the blob store before it exists. Anything
   * refused removes every photo stored so far (and staging removes its temp
   * files), so a refused upload leaves nothing.
   */
  async upload(principal: Principal, parts: AsyncIterable<Multipart>): Promise<PipelineJob> {
    const { ctx } = this;
    // Before a byte of the body is read: without COLMAP nothing could ever use it.
    await requireColmap(ctx.config.pipeline.colmapBin);
    const uploadId = newId();
    const photos: string[] = [];
    const opts = { tmpDir: ctx.tmpDir, maxBytes: ctx.config.maxUploadSize, maxImagePixels: ctx.config.maxImagePixels };
    try {
      const { name } = await readPipelineUpload(parts, opts, async (photo) => {
        photos.push(photo.fileName);
        await ctx.blobs.putFile(photoKey(uploadId, photo.fileName), photo.staged.path, photo.staged.mime);
      });
      const input: PipelineInput = { upload_id: uploadId, name, photos };
      // The job is enqueued outside any transaction of ours: this narrows, without closing, the
      // window in which an account deleted meanwhile keeps a job (docs/pipeline.md).
      await holdAccount(ctx.db, ctx.db.kysely, principal);
      return present(await ctx.jobs.enqueue(PHOTOGRAMMETRY, input, { userId: principal.userId, dedupeKey: dedupeKeyOf(uploadId) }));
    } catch (err) {
      if (photos.length > 0) await this.removeUpload(uploadId);
      throw err;
    }
  }

  /** A photogrammetry job, to its owner or an admin; 404 for everyone else and for jobs of other kinds. */
  async job(principal: Principal, jobId: string): Promise<PipelineJob> {
    const job = await this.ctx.jobs.get(jobId);
    if (!job || job.type !== PHOTOGRAMMETRY || !canSee(principal, job)) throw new NotFound('No such pipeline job.', 'job_not_found');
    return present(job);
  }

  /** What the download route serves: the model of a completed job in `format`. */
  async model(principal: Principal, jobId: string, format: ModelFormat): Promise<StoredFile & { fileName: string }> {
    const job = await this.job(principal, jobId);
    if (job.status === 'queued' || job.status === 'processing') {
      const where = job.stage ? `, at the ${job.stage} stage (${Math.round(job.progress * 100)}%)` : '';
      throw new Conflict(`The model is not ready yet: the job is ${job.status}${where}. Poll /pipeline/status/${job.job_id} until it is completed.`, 'model_not_ready');
    }
    if (job.status !== 'completed') {
      const why = job.error ? ` (${job.error.code}: ${job.error.detail})` : '';
      throw new Conflict(`This job ended ${job.status} without a model${why}.`, 'model_unavailable');
    }
    const result = job.result as PipelineResult;
    const file = result.files[format];
    const input = job.input as PipelineInput;
    return {
      key: modelKey(input.upload_id, format),
      etag: file.etag,
      bytes: file.bytes,
      lastModified: new Date(job.finished_at ?? result.finished_model_at),
      contentType: MODEL_TYPES[format],
      // Private to its owner; never changes once made.
      cacheControl: 'private, max-age=86400, immutable',
      fileName: `${job.job_id}.${format}`,
    };
  }

  /** Best effort: what is left is an orphan the sweep removes. */
  private async removeUpload(uploadId: string): Promise<void> {
    try {
      await this.ctx.blobs.deletePrefix(uploadPrefix(uploadId));
    } catch (err) {
      this.ctx.log.warn({ err, uploadId }, 'could not remove the photos of a refused pipeline upload');
    }
  }
}

/** Account deletion (account-cleanup.ts): the user's photos and models go, then (a later clean-up) the user's finished jobs. */
export async function deleteUserPipelines(ctx: Context, userId: string): Promise<void> {
  let cursor: string | undefined;
  do {
    const page = await ctx.jobs.list({ userId, type: PHOTOGRAMMETRY, limit: 100, cursor });
    for (const job of page.jobs) await ctx.blobs.deletePrefix(uploadPrefix((job.input as PipelineInput).upload_id));
    cursor = page.next_cursor ?? undefined;
  } while (cursor !== undefined);
}
