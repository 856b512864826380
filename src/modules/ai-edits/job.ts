/**
 * The `ai_edit` job: sends a booked process's two uploads and prompt to the
 * image model, validates the answer through the image engine, stores it as a
 * new file with variants and completes the process. Retries (429, 5xx,
 * timeouts) are the job system's, with backoff; when the job gives up (a
 * refusal, another 4xx, a bad answer, the last attempt) the process is
 * failed with the reason, so a status poll says why.
 */
import { Readable } from 'node:stream';
import type { Context } from '../../context.js';
import { DomainError } from '../../errors.js';
import { discardStaged, stageUpload } from '../../images/ingest.js';
import { JobError, PermanentJobError, TransientJobError } from '../../platform/jobs/errors.js';
import { outageOf } from '../../platform/jobs/outage.js';
import type { HandlerOptions, JobContext } from '../../platform/jobs/types.js';
import { RESULT_SIZES, readOriginal, storeImage } from './files.js';
import { createImageEditor, NO_KEY_MESSAGE, type ImageEditor } from './provider.js';
import * as repo from './repo.js';
import { AI_EDIT_KIND, commitResult, failProcess, publishCompleted, type AiEditJobInput } from './service.js';

export interface AiEditJobResult {
  init_id: string;
  result_file_id: string;
}

/** An image model answer is a few MB; this only stops a runaway one. */
const RESULT_MAX_BYTES = 64 * 1024 * 1024;

/** Defaults: a provider call may take OPENAI_TIMEOUT_SECONDS; the attempt gets a minute more to store the result. */
export function aiEditJobOptions(ctx: Context): HandlerOptions {
  return {
    maxAttempts: 4,
    timeoutMs: ctx.config.openai.timeoutSeconds * 1000 + 60_000,
    backoff: { delayMs: 5_000, maxDelayMs: 120_000 },
  };
}

/**
 * Registers the `ai_edit` kind (modules/jobs.ts calls this in every process
 * that runs jobs). Once per Context: a test registers first with its own
 * options (short backoff), and the later call leaves that registration in place.
 */
export function registerAiEditJobs(ctx: Context, options: HandlerOptions = {}): void {
  if (ctx.jobs.has(AI_EDIT_KIND)) return;
  const editor = createImageEditor(ctx.config);
  ctx.jobs.register<AiEditJobInput, AiEditJobResult>(AI_EDIT_KIND, (input, job) => runAiEdit(ctx, editor, input, job), {
    ...aiEditJobOptions(ctx),
    ...options,
  });
}

/** Whether this failure ends the job (so the process must be failed now). */
function endsJob(err: unknown, job: JobContext): boolean {
  if (err instanceof TransientJobError) return job.attempt >= job.maxAttempts;
  return true;
}

function reasonOf(err: unknown): string {
  return err instanceof JobError ? err.detail : 'The edit failed unexpectedly.';
}

export async function runAiEdit(ctx: Context, editor: ImageEditor | null, input: AiEditJobInput, job: JobContext): Promise<AiEditJobResult> {
  const row = await repo.findProcess(ctx.db.kysely, input.init_id);
  if (!row) throw new PermanentJobError('process_gone', 'The process no longer exists.');
  // A retry after the result was stored (the attempt timed out while finishing) has nothing left to do.
  if (row.status === 'completed' && row.result_file_id) return { init_id: row.init_id, result_file_id: row.result_file_id };
  if (row.status !== 'processing' || !row.source_file_id || !row.target_file_id || row.prompt === null) {
    throw new PermanentJobError('process_not_booked', 'The process is not booked for an edit.');
  }
  try {
    if (!editor) throw new PermanentJobError('provider_not_configured', NO_KEY_MESSAGE);
    const [source, target] = await Promise.all([readOriginal(ctx, row.source_file_id), readOriginal(ctx, row.target_file_id)]);
    await job.report(0.1, { stage: 'editing' });
    const bytes = await editor.edit({ prompt: row.prompt, images: [{ name: 'source.jpg', data: source }, { name: 'target.jpg', data: target }] }, job.signal);
    await job.report(0.8, { stage: 'storing' });
    const fileId = await storeResult(ctx, row, bytes);
    await publishCompleted(ctx, row.init_id, row.owner_id, fileId);
    return { init_id: row.init_id, result_file_id: fileId };
  } catch (err) {
    // An aborted attempt (job timeout, shutdown) is the job system's to classify; it may run again.
    // So is a database or network outage, which the runner retries as a transient error.
    const failure = outageOf(err) ?? err;
    if (!job.signal.aborted && endsJob(failure, job)) await failProcess(ctx, row.init_id, row.owner_id, reasonOf(failure));
    throw err;
  }
}

/** Validates the model's answer as an image (by content, bounded decode) and stores it with its variants. */
async function storeResult(ctx: Context, row: repo.ProcessRow, bytes: Buffer): Promise<string> {
  let staged;
  try {
    staged = await stageUpload(Readable.from([bytes]), { tmpDir: ctx.tmpDir, maxBytes: RESULT_MAX_BYTES });
  } catch (err) {
    throw badImage(err);
  }
  try {
    const file = await storeImage(ctx, staged, { owner_id: row.owner_id, kind: 'result' }, RESULT_SIZES, (f) => commitResult(ctx, row.init_id, f)).catch(
      (err: unknown) => {
        throw err instanceof DomainError && (err.status === 413 || err.status === 415) ? badImage(err) : err;
      },
    );
    return file.file_id;
  } finally {
    await discardStaged(staged);
  }
}

function badImage(err: unknown): Error {
  if (!(err instanceof DomainError)) return err instanceof Error ? err : new Error(String(err));
  return new PermanentJobError('provider_bad_image', `The image provider's answer is not a usable image: ${err.detail}`);
}
