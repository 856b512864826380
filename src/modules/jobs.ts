/**
 * Every module's background job kinds, registered in one place. Both
 * `kiln serve` and `kiln worker` call this at startup, so a kind's handler
 * exists wherever its jobs run. A module adds one line here.
 */
import type { Context } from '../context.js';
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
