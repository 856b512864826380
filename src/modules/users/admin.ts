/** What admins do to other accounts: list them page by page, deactivate, reactivate, promote, demote. */
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { Conflict, Forbidden, NotFound } from '../../errors.js';
import { hasAccount, type Principal } from '../../auth/principal.js';
import { decodePosition, encodePosition } from '../../platform/http/cursor.js';
import * as repo from './repo.js';
import { toUserView, type UserView } from './service.js';

export interface UserPage {
  users: UserView[];
  next_cursor: string | null;
}

export async function listUsers(ctx: Context, limit: number, cursor?: string): Promise<UserPage> {
  const after = cursor ? decodePosition(cursor) : undefined;
  // One extra row tells whether another page exists without a count query.
  const rows = await repo.listUsers(ctx.db.kysely, limit + 1, after);
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { users: page.map(toUserView), next_cursor: rows.length > limit && last ? encodePosition({ createdAt: last.created_at, id: last.id }) : null };
}

export interface AdminChanges {
  is_active?: boolean;
  is_admin?: boolean;
}

/**
 * `by` is the admin making the change. An admin cannot deactivate or demote
 * themselves: with one admin that would leave the shop with none, and only
 * a restart with ADMIN_EMAIL or `kiln users create --admin` would bring one back.
 * The caller's own rights are read again under lock with the target's: two
 * admins demoting (or deactivating) each other at once each passed the guard
 * while the other was still an admin, and both changes went through, leaving
 * none. Now the second to take the lock is no admin any more: 403.
 */
export async function changeUser(ctx: Context, userId: string, changes: AdminChanges, by: Pick<Principal, 'userId' | 'via'>): Promise<UserView> {
  if (userId === by.userId && (changes.is_active === false || changes.is_admin === false)) {
    throw new Conflict('An admin cannot deactivate or demote themselves; another admin can.', 'own_admin_rights');
  }
  return ctx.db.kysely.transaction().execute(async (tx) => {
    // The static API_KEY has no row: its rights come from the key alone.
    const rows = await repo.lockUsers(tx, ctx.db.dialect, hasAccount(by) ? [userId, by.userId] : [userId]);
    const user = rows.find((r) => r.id === userId);
    if (!user) throw new NotFound('No such user.', 'user_not_found');
    const caller = rows.find((r) => r.id === by.userId);
    if (hasAccount(by) && !(caller?.is_active && caller.is_admin)) throw new Forbidden('Only admins may do this.', 'admin_required');
    const now = isoNow(ctx.clock);
    const patch: Parameters<typeof repo.updateUser>[2] = {};
    for (const key of ['is_active', 'is_admin'] as const) {
      const wanted = changes[key];
      if (wanted !== undefined && Number(wanted) !== Number(user[key])) patch[key] = wanted ? 1 : 0;
    }
    // Nothing changes (an empty body, or the values it already has): nothing is written, updated_at stays.
    if (Object.keys(patch).length === 0) return toUserView(user);
    patch.updated_at = now;
    await repo.updateUser(tx, userId, patch);
    // Access tokens and keys stop at once because the guard reads is_active on every request; ending
    // them too (in the same transaction) means reactivating brings back no session, token or API key of before.
    if (patch.is_active === 0) await repo.endCredentials(tx, userId, now);
    return toUserView({ ...user, ...patch } as repo.UserRow);
  });
}
