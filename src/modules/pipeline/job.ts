/**
 * The `photogrammetry` job: from stored photos to a stored model. Each run
 * gets a workspace of its own under DATA_DIR/tmp (the job may run in a
 * `kiln worker` on another machine), where the reconstruction
 * (reconstruction.ts) copies the photos in and runs COLMAP on them.
 *
 * The workspace is removed when the run ends, whatever happened. When the
 * job will not run again (done, failed, timed out), its photos go too.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../../context.js';
import { abortWhy, PermanentJobError, type JobContext } from '../../platform/jobs/index.js';
import { EXHAUSTIVE_MAX_PHOTOS, Reconstruction } from './reconstruction.js';
import { PHOTOGRAMMETRY, uploadPrefix, type PipelineInput, type PipelineResult } from './service.js';

export { EXHAUSTIVE_MAX_PHOTOS } from './reconstruction.js';

const WORKSPACE_PREFIX = 'pipeline-';

export interface PipelineJobOptions {
  /** Per-run limit (default PIPELINE_TIMEOUT_MINUTES). */
  timeoutMs?: number;
  /** Tests lower it to drive the sequential matcher with few photos. */
  exhaustiveMaxPhotos?: number;
}

/**
 * Whether this run's ending is the job's last: then its photos can go. A
 * shutdown puts the job back in the queue and a lost lease means another
 * runner has it; both still need the photos, as does a retry.
 */
function isFinal(err: unknown, job: JobContext): boolean {
  if (job.signal.aborted) {
    const why = abortWhy(job.signal);
    if (why === 'shutdown' || why === 'lost') return false;
    if (why === 'cancelled') return true;
    return job.attempt >= job.maxAttempts;
  }
  if (err instanceof PermanentJobError) return true;
  return job.attempt >= job.maxAttempts;
}

/**
 * Workspaces of runs whose process died (a crash, SIGKILL) are never removed
 * by their own run. No run outlives its timeout, so one untouched for longer
 * than that (plus an hour's margin) belongs to no live run.
 */
async function sweepStaleWorkspaces(tmpDir: string, olderThanMs: number, log: JobContext['log']): Promise<void> {
  const now = Date.now();
  for (const entry of await readdir(tmpDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || !entry.name.startsWith(WORKSPACE_PREFIX)) continue;
    const dir = path.join(tmpDir, entry.name);
    try {
      if (now - (await stat(dir)).mtimeMs < olderThanMs) continue;
      await rm(dir, { recursive: true, force: true });
      log.info({ dir }, 'removed a pipeline workspace left by an earlier run');
    } catch (err) {
      log.warn({ err, dir }, 'could not remove a stale pipeline workspace');
    }
  }
}

export async function runPhotogrammetry(ctx: Context, input: PipelineInput, job: JobContext, options: Required<PipelineJobOptions>): Promise<PipelineResult> {
  await sweepStaleWorkspaces(ctx.tmpDir, options.timeoutMs + 60 * 60 * 1000, job.log);
  const workspace = await mkdtemp(path.join(ctx.tmpDir, WORKSPACE_PREFIX));
  try {
    return await new Reconstruction(ctx, input, job, workspace, options.exhaustiveMaxPhotos).run();
  } catch (err) {
    if (isFinal(err, job)) {
      await ctx.blobs.deletePrefix(`${uploadPrefix(input.upload_id)}/photos`).catch((cleanup: unknown) => job.log.warn({ err: cleanup }, 'could not remove the photos of a finished pipeline job'));
    }
    throw err;
  } finally {
    // The child is gone by now (runColmap resolves only once it has exited), so nothing writes here any more.
    await rm(workspace, { recursive: true, force: true });
  }
}

/**
 * Registers `photogrammetry` on the Context's job runner, once per Context
 * (a test registers first with a short timeout). One attempt: a
 * reconstruction is deterministic, so the same photos fail the same way
 * again, and a run that timed out would time out again.
 */
export function registerPipelineJobs(ctx: Context, options: PipelineJobOptions = {}): void {
  if (ctx.jobs.has(PHOTOGRAMMETRY)) return;
  const resolved: Required<PipelineJobOptions> = {
    timeoutMs: options.timeoutMs ?? ctx.config.pipeline.timeoutMinutes * 60_000,
    exhaustiveMaxPhotos: options.exhaustiveMaxPhotos ?? EXHAUSTIVE_MAX_PHOTOS,
  };
  ctx.jobs.register<PipelineInput, PipelineResult>(PHOTOGRAMMETRY, (input, job) => runPhotogrammetry(ctx, input, job, resolved), {
    maxAttempts: 1,
    timeoutMs: resolved.timeoutMs,
    // The job's row is what owns its model files (service.ts existingUploads): kept while the model is.
    keepFinished: true,
  });
}
