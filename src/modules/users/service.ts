/**
 * Account rules: registering, reading, changing and deleting one's own
 * account. Sessions are in sessions.ts, API keys in api-keys.ts, admin
 * actions in admin.ts.
 */
import { hashPassword, verifyPassword } from '../../auth/passwords.js';
import { assertSession, type Principal } from '../../auth/principal.js';
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { Conflict, Forbidden, NotFound, ValidationFailed } from '../../errors.js';
import { newId } from '../../ids.js';
import { isUniqueViolation } from '../../platform/db/index.js';
import { accountCleanups } from '../account-cleanup.js';
import { checkAccountFields } from './account-rules.js';
import * as repo from './repo.js';

/** A user as every answer shows it. */
export interface UserView {
  id: string;
  email: string;
  username: string;
  is_active: boolean;
  is_admin: boolean;
  created_at: string;
  updated_at: string;
}

export function toUserView(row: repo.UserRow): UserView {
  return {
    id: row.id,
    email: row.email,
    username: row.username,
    is_active: row.is_active === 1,
    is_admin: row.is_admin === 1,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

export interface NewUser {
  email: string;
  username: string;
  password: string;
}

async function assertFree(ctx: Context, fields: { emailLower?: string; username?: string }, exceptUserId?: string): Promise<void> {
  const q = ctx.db.kysely;
  if (fields.emailLower !== undefined && (await repo.emailExists(q, fields.emailLower, exceptUserId))) {
    throw new Conflict('An account with this email already exists.', 'email_taken');
  }
  if (fields.username !== undefined && (await repo.usernameExists(q, fields.username, exceptUserId))) {
    throw new Conflict('This username is taken.', 'username_taken');
  }
}

/** A unique violation raced past assertFree: find out which field it was. */
async function conflictAfterRace(ctx: Context, fields: { emailLower?: string; username?: string }, exceptUserId?: string): Promise<never> {
  await assertFree(ctx, fields, exceptUserId);
  throw new Conflict('This email or username is taken.', 'conflict');
}

/**
 * A new account. Only `kiln users create --admin` passes `admin`: it is a
 * parameter of its own, never a field of `input`, so no request body can
 * carry it (`POST /auth/register` hands its whole body over).
 */
export async function createUser(ctx: Context, input: NewUser, options: { admin?: boolean } = {}): Promise<UserView> {
  const email = input.email.trim();
  checkAccountFields({ email, username: input.username, password: input.password });
  const fields = { emailLower: email.toLowerCase(), username: input.username };
  await assertFree(ctx, fields);
  const now = isoNow(ctx.clock);
  const row: repo.UserRow = {
    id: newId(),
    email,
    email_lower: fields.emailLower,
    username: input.username,
    password_hash: await hashPassword(input.password),
    is_active: 1,
    is_admin: options.admin === true ? 1 : 0,
    credentials_epoch: 0,
    created_at: now,
    updated_at: now,
  };
  try {
    await repo.insertUser(ctx.db.kysely, row);
  } catch (err) {
    if (isUniqueViolation(err)) await conflictAfterRace(ctx, fields);
    throw err;
  }
  return toUserView(row);
}

/** The caller's own account; the static API_KEY has none. */
async function ownAccount(ctx: Context, principal: Principal): Promise<repo.UserRow> {
  const row = await repo.findUserById(ctx.db.kysely, principal.userId);
  if (!row) throw new NotFound('This credential has no user account.', 'no_account');
  return row;
}

export async function getMe(ctx: Context, principal: Principal): Promise<UserView> {
  return toUserView(await ownAccount(ctx, principal));
}

export interface AccountChanges {
  username?: string;
  email?: string;
  password?: string;
  current_password?: string;
}

export async function updateMe(ctx: Context, principal: Principal, changes: AccountChanges): Promise<UserView> {
  const user = await ownAccount(ctx, principal);
  const email = changes.email?.trim();
  const emailChanges = email !== undefined && email !== user.email;
  const usernameChanges = changes.username !== undefined && changes.username !== user.username;
  const passwordChanges = changes.password !== undefined;
  checkAccountFields({ email, username: changes.username, password: changes.password });
  if ((emailChanges || passwordChanges) && changes.current_password === undefined) {
    throw new ValidationFailed('current_password is required to change the email or password.', [
      { field: 'body.current_password', message: 'is required to change the email or password' },
    ]);
  }
  // A current_password that is sent is checked, whatever else the body changes: a client that sends one expects it to count.
  if (changes.current_password !== undefined && !(await verifyPassword(user.password_hash, changes.current_password))) {
    throw new Forbidden('The current password is wrong.', 'wrong_password');
  }
  // Nothing to change (an empty body, or the values it already has): nothing is written, updated_at stays.
  if (!emailChanges && !usernameChanges && !passwordChanges) return toUserView(user);

  const fields = {
    emailLower: emailChanges ? email.toLowerCase() : undefined,
    username: usernameChanges ? changes.username : undefined,
  };
  await assertFree(ctx, fields, user.id);
  const now = isoNow(ctx.clock);
  const patch: Parameters<typeof repo.updateUser>[2] = { updated_at: now };
  if (emailChanges) Object.assign(patch, { email, email_lower: email.toLowerCase() });
  if (usernameChanges) patch.username = changes.username;
  if (passwordChanges) patch.password_hash = await hashPassword(changes.password as string);
  try {
    await ctx.db.kysely.transaction().execute(async (tx) => {
      await repo.updateUser(tx, user.id, patch);
      // A new password ends every credential, this request's token included: whoever knew the old one is out,
      // with no session, token or API key made while they were in. In the same transaction: never one without the other.
      if (passwordChanges) await repo.endCredentials(tx, user.id, now);
    });
  } catch (err) {
    if (isUniqueViolation(err)) await conflictAfterRace(ctx, fields, user.id);
    throw err;
  }
  return toUserView({ ...user, ...patch } as repo.UserRow);
}

/**
 * Deletes the account: first what other modules keep for it (uploads), then
 * its sessions, keys and row, then the modules' clean-ups once more. An
 * upload that was already past its checks when the delete began commits
 * either before the row goes (it holds the row: auth/account-hold.ts), and
 * the second pass removes it, or after, and is refused. A failure in the
 * first pass leaves the account in place, so the delete can be asked again;
 * one in the second is logged (the account is gone by then).
 */
export async function deleteMe(ctx: Context, principal: Principal): Promise<void> {
  const user = await ownAccount(ctx, principal);
  assertSession(principal, 'Deleting the account');
  for (const cleanup of accountCleanups) await cleanup(ctx, user.id);
  await repo.deleteUser(ctx.db.kysely, user.id);
  for (const cleanup of accountCleanups) {
    await cleanup(ctx, user.id).catch((err: unknown) => ctx.log.error({ err, userId: user.id }, 'account clean-up after the delete failed'));
  }
}
