/**
 * The `ean_fetch` job: from a barcode to a stored picture. Stored already:
 * complete from the store. Otherwise take the barcode's single-flight lease
 * (repo.ts), ask the provider, download the picture through the guarded
 * fetch, run it through the upload checks and variants, store blobs then
 * the row. A job that finds the lease held waits for its holder, through
 * the holder's retries, and then completes from the store or ends with the
 * holder's last error, so the provider is asked by one job however many
 * users ask at once. It waits in the queue (DeferJob), not in a runner's
 * slot: the holder's retry must find a slot free.
 */
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { DomainError } from '../../errors.js';
import { newId } from '../../ids.js';
import { discardStaged } from '../../images/ingest.js';
import { BlobBatch, imageRowFields, renderAndStore } from '../../images/store.js';
import { DeferJob, JobError, PermanentJobError, TransientJobError, type BackoffOptions, type JobContext, type JobErrorInfo } from '../../platform/jobs/index.js';
import { outageOf } from '../../platform/jobs/outage.js';
import { attachEanPicture } from '../shop/ean-attach.js';
import { createOutbound, type Outbound, type OutboundTimeouts } from './outbound.js';
import { createProvider, type ProductProvider } from './providers/index.js';
import * as repo from './repo.js';
import { PRODUCT_SIZES, type ProductImageAnswer } from './schemas.js';
import { EAN_FETCH, productBlobKey, toAnswer, type EanFetchInput } from './service.js';

export interface EanFetchOptions extends Partial<OutboundTimeouts> {
  /** Retry delay before the second attempt, doubled after (default 2 s, at most 1 min). */
  backoff?: BackoffOptions;
  maxAttempts?: number;
  /** How often a job waiting on another job's lease looks again, from the queue (default 500 ms). */
  waitPollMs?: number;
  /** Replaces the configured provider (tests, a second provider). */
  provider?: (ctx: Context, outbound: Outbound) => ProductProvider;
}

/** The picture's record as GET /api/v1/images/{ean_code} answers it, and where it came from. */
export interface EanFetchResult extends ProductImageAnswer {
  /** False when the picture was already stored and the provider was not asked. */
  fetched_from_provider: boolean;
}

const DEFAULT_TIMEOUTS: OutboundTimeouts = { connectTimeoutMs: 5_000, totalTimeoutMs: 30_000 };

function resultOf(row: repo.ProductImageRow, fromProvider: boolean): EanFetchResult {
  return { ...toAnswer(row), fetched_from_provider: fromProvider };
}

/** The image engine's refusals (not an image, too large, corrupt) as job errors that will not be retried. */
function imageFailure(err: unknown): unknown {
  if (!(err instanceof DomainError)) return err;
  if (err.status === 413) return new PermanentJobError('image_too_large', `The product picture is too large: ${err.detail}`);
  if (err.status === 415) return new PermanentJobError('not_an_image', `The product picture is not an accepted image: ${err.detail}`);
  return err;
}

export class EanFetcher {
  private readonly provider: ProductProvider;
  private readonly outbound: Outbound;
  private readonly leaseMs: number;
  private readonly waitPollMs: number;

  constructor(
    private readonly ctx: Context,
    options: EanFetchOptions = {},
  ) {
    const timeouts = { ...DEFAULT_TIMEOUTS, ...options };
    this.outbound = createOutbound(ctx.config, timeouts);
    this.provider = options.provider ? options.provider(ctx, this.outbound) : createProvider(ctx.config, (url, signal) => this.outbound.getJson(url, signal));
    // Two bounded requests plus the image work; a holder that died frees the barcode after this.
    this.leaseMs = 2 * timeouts.totalTimeoutMs + 60_000;
    this.waitPollMs = options.waitPollMs ?? 500;
  }

  /** When a lease taken or renewed now runs out. */
  private leaseUntil(): string {
    return new Date(this.ctx.clock.now().getTime() + this.leaseMs).toISOString();
  }

  /** Per-attempt limit for the runner: longer than a lease, which covers the holder's own work. */
  get timeoutMs(): number {
    return this.leaseMs + 30_000;
  }

  async run(input: EanFetchInput, job: JobContext): Promise<EanFetchResult> {
    const { row, fromProvider } = await this.stored(input, job);
    // Attaching is idempotent: a retried job whose first run attached it attaches nothing more.
    if (input.product_id !== undefined) await attachEanPicture(this.ctx, input.product_id, row, job.log);
    return resultOf(row, fromProvider);
  }

  /** The barcode's stored picture: found in the store, or fetched now (once for all jobs asking at the same time). */
  private async stored(input: EanFetchInput, job: JobContext): Promise<{ row: repo.ProductImageRow; fromProvider: boolean }> {
    const { ctx } = this;
    const ean = input.ean_code;
    for (;;) {
      const stored = await repo.findImage(ctx.db.kysely, ean);
      if (stored) return { row: stored, fromProvider: false };
      const lease = await repo.findLease(ctx.db.kysely, ean);
      const now = isoNow(ctx.clock);
      if (lease && lease.job_id !== job.jobId) {
        // The holder failed for good after this job was asked for: asked at the same time, it ends the same way, without asking again.
        if (lease.error !== null && lease.updated_at >= job.createdAt) throw new PermanentJobError(...adopted(lease.error));
        if (lease.error === null && lease.locked_until > now) {
          job.log.debug({ holder: lease.job_id }, 'waiting in the queue for the job already fetching this barcode');
          throw new DeferJob(this.waitPollMs);
        }
      }
      if (await repo.tryTakeLease(ctx.db.kysely, ean, job.jobId, now, this.leaseUntil())) break;
    }
    // The holder may have stored the picture and let go between our two reads above: look once more under the lease.
    const storedMeanwhile = await repo.findImage(ctx.db.kysely, ean);
    if (storedMeanwhile) {
      await repo.releaseLease(ctx.db.kysely, ean, job.jobId);
      return { row: storedMeanwhile, fromProvider: false };
    }
    return this.fetchAndStore(input, job);
  }

  private async fetchAndStore(input: EanFetchInput, job: JobContext): Promise<{ row: repo.ProductImageRow; fromProvider: boolean }> {
    const { ctx } = this;
    const ean = input.ean_code;
    try {
      await job.report(0.1, { stage: 'lookup' });
      const product = await this.provider.lookup(ean, job.signal);
      await job.report(0.4, { stage: 'download' });
      const staged = await this.outbound.download(product.imageUrl, ctx.tmpDir, job.signal).catch((err: unknown) => Promise.reject(imageFailure(err)));
      const batch = new BlobBatch(ctx.blobs, ctx.log);
      try {
        await job.report(0.7, { stage: 'variants' });
        const imageId = newId();
        const stored = await renderAndStore(batch, staged, PRODUCT_SIZES, (size) => productBlobKey(imageId, size), {
          maxImagePixels: ctx.config.maxImagePixels,
          jpegQuality: ctx.config.jpegQuality,
        });
        const row: repo.ProductImageRow = {
          ean_code: ean,
          image_id: imageId,
          provider: this.provider.name,
          product_name: product.productName,
          source_url: product.imageUrl,
          ...imageRowFields(staged, stored),
          job_id: job.jobId,
          fetched_at: isoNow(ctx.clock),
        };
        await repo.insertImageAndRelease(ctx.db.kysely, row);
        return { row, fromProvider: true };
      } catch (err) {
        await batch.rollback();
        throw imageFailure(err);
      } finally {
        await discardStaged(staged);
      }
    } catch (err) {
      // A database or network outage is retried by the runner as a transient error: the lease follows suit.
      await this.letGo(ean, job, outageOf(err) ?? err);
      throw err;
    }
  }

  /**
   * What the lease says after a failed attempt. A transient failure with
   * attempts left keeps the lease through the backoff: the holder asks again
   * itself, and the jobs waiting on it go on waiting instead of asking the
   * provider in its place. A permanent failure, or the last attempt's, stays
   * on the lease, so the waiting jobs end the same way. Anything else (a
   * bug) frees the barcode.
   */
  private async letGo(ean: string, job: JobContext, err: unknown): Promise<void> {
    const { ctx } = this;
    try {
      const retried = err instanceof TransientJobError && job.attempt < job.maxAttempts;
      if (retried) {
        // Taking a lease this job holds renews it.
        await repo.tryTakeLease(ctx.db.kysely, ean, job.jobId, isoNow(ctx.clock), this.leaseUntil());
      } else if (err instanceof JobError) {
        const info: JobErrorInfo = { code: err.code, detail: err.detail };
        await repo.failLease(ctx.db.kysely, ean, job.jobId, JSON.stringify(info), isoNow(ctx.clock));
      } else {
        await repo.releaseLease(ctx.db.kysely, ean, job.jobId);
      }
    } catch (cleanup) {
      // The lease runs out on its own; the job's own error is the one worth reporting.
      job.log.warn({ err: cleanup }, 'could not release the barcode lease');
    }
  }
}

function adopted(text: string): [string, string] {
  const info = JSON.parse(text) as JobErrorInfo;
  return [info.code, info.detail];
}

/**
 * Registers `ean_fetch` on the Context's job runner. Once per Context: a
 * test registers first with short timeouts and backoff, and the call made
 * while the app is built then leaves that registration in place.
 */
export function registerProductImageJobs(ctx: Context, options: EanFetchOptions = {}): void {
  if (ctx.jobs.has(EAN_FETCH)) return;
  const fetcher = new EanFetcher(ctx, options);
  ctx.jobs.register<EanFetchInput, EanFetchResult>(EAN_FETCH, (input, job) => fetcher.run(input, job), {
    maxAttempts: options.maxAttempts ?? 3,
    timeoutMs: fetcher.timeoutMs,
    backoff: options.backoff ?? { delayMs: 2_000, maxDelayMs: 60_000 },
  });
}
