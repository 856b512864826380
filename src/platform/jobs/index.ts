/**
 * The job system: one JobRunner interface (types.ts), two runners: local.ts
 * (jobs in the database, run inside `kiln serve`) and bullmq.ts (REDIS_URL:
 * BullMQ queues, run by `kiln worker`). The database row is the truth for
 * status either way. Modules register their kinds on the Context's runner
 * at startup: `ctx.jobs.register(kind, handler, options)`.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import type { Config } from '../../config.js';
import type { Db } from '../db/index.js';
import { BullJobRunner } from './bullmq.js';
import { LocalJobRunner } from './local.js';
import type { JobRunner } from './types.js';

export type JobRole = 'serve' | 'worker';

export function createJobRunner(
  config: Pick<Config, 'redisUrl' | 'redisPrefix' | 'jobConcurrency'>,
  deps: { db: Db; log: Logger; clock: Clock },
  role: JobRole = 'serve',
): JobRunner {
  if (config.redisUrl) {
    return new BullJobRunner(deps, { redisUrl: config.redisUrl, role, concurrency: config.jobConcurrency, prefix: config.redisPrefix });
  }
  return new LocalJobRunner(deps, { concurrency: config.jobConcurrency });
}

export { BullJobRunner, type BullRunnerOptions } from './bullmq.js';
export { LocalJobRunner, type LocalRunnerOptions } from './local.js';
export { DeferJob, JobError, PermanentJobError, TransientJobError } from './errors.js';
export { abortWhy, type AbortWhy } from './execute.js';
export { dedupeKeysWithJobs } from './store.js';
export type * from './types.js';
export { JOB_STATUSES } from './types.js';
