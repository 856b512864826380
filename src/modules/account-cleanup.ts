/**
 * What each module deletes when a user deletes their account (docs/auth.md:
 * "its uploads are deleted"). The users module calls these in order before
 * removing the user row; a module that keeps things per user adds its
 * function to the list.
 */
import type { Context } from '../context.js';
import { deleteUserAiEdits } from './ai-edits/service.js';
import { deleteUserOrders } from './custom-orders/service.js';
import { deleteUserGalleries } from './galleries/service.js';
import { deleteUserPipelines } from './pipeline/service.js';

export type AccountCleanup = (ctx: Context, userId: string) => Promise<void>;

export const accountCleanups: AccountCleanup[] = [
  deleteUserAiEdits,
  deleteUserOrders,
  deleteUserGalleries,
  deleteUserPipelines,
  // Last: the pipeline's clean-up finds the models to delete through the user's jobs.
  async (ctx, userId) => {
    await ctx.jobs.deleteFinishedOf(userId);
  },
];
