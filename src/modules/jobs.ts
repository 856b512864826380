/**
 * Every module's background job kinds, registered in one place. Both
 * `kiln serve` and `kiln worker` call this at startup, so a kind's handler
 * exists wherever its jobs run. A module adds one line here.
 */
import type { Context } from '../context.js';
import { isoAgo } from '../clock.js';
import { HOURLY_MS, PeriodicSweep } from '../platform/sweep.js';
import { registerAiEditJobs } from './ai-edits/job.js';
import { registerCustomOrderJobs } from './custom-orders/webhook.js';
import { registerPipelineJobs } from './pipeline/job.js';
import { registerProductImageJobs } from './product-images/fetch-job.js';

type JobRegistration = (ctx: Context) => void;

const registrations: readonly JobRegistration[] = [
  (ctx) => registerAiEditJobs(ctx),
  (ctx) => registerCustomOrderJobs(ctx),
  (ctx) => registerProductImageJobs(ctx),
  (ctx) => registerPipelineJobs(ctx),
];

export function registerJobHandlers(ctx: Context): void {
  for (const register of registrations) register(ctx);
}

/**
 * The sweep that deletes jobs finished more than JOB_RETENTION_DAYS ago
 * (docs/jobs.md), but never a kind registered with `keepFinished`; with
 * JOB_RETENTION_DAYS=0 it deletes nothing.
 */
export function jobRetention(ctx: Context): PeriodicSweep {
  const keepMs = ctx.config.jobRetentionDays * 24 * 60 * 60_000;
  return new PeriodicSweep(ctx.log, 'pruning finished jobs', HOURLY_MS, async () => {
    if (keepMs === 0) return 0;
    const deleted = await ctx.jobs.pruneFinished(isoAgo(ctx.clock, keepMs));
    if (deleted > 0) ctx.log.info({ jobs: deleted, retentionDays: ctx.config.jobRetentionDays }, 'pruned finished jobs');
    return deleted;
  });
}
