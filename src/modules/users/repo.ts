/**
 * SQL for accounts: users, refresh tokens (sessions) and API keys. Every
 * function takes a Kysely handle so a service can pass a transaction.
 */
import type { Insertable, Kysely, Selectable, Transaction, Updateable } from 'kysely';
import { lockAgainstUpdate, lockForUpdate, type Database, type DialectName } from '../../platform/db/index.js';
import type { Position } from '../../platform/http/cursor.js';

type Q = Kysely<Database>;
export type UserRow = Selectable<Database['users']>;
export type RefreshTokenRow = Selectable<Database['refresh_tokens']>;
export type ApiKeyRow = Selectable<Database['api_keys']>;

// ---- users

export async function insertUser(q: Q, row: Insertable<Database['users']>): Promise<void> {
  await q.insertInto('users').values(row).execute();
}

/** Inserts unless the email or username is taken; true when this call created the row. */
export async function insertUserIfAbsent(q: Q, row: Insertable<Database['users']>): Promise<boolean> {
  const result = await q.insertInto('users').values(row).onConflict((oc) => oc.doNothing()).executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
}

export async function findUserById(q: Q, id: string): Promise<UserRow | undefined> {
  return q.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * The rows of `ids`, locked until the transaction `q` ends (FOR UPDATE on PostgreSQL; SQLite's transactions
 * hold the write lock already), taken in id order so that two transactions locking the same rows never
 * wait on each other in a circle.
 */
export async function lockUsers(q: Q, dialect: DialectName, ids: string[]): Promise<UserRow[]> {
  return lockForUpdate(dialect, q.selectFrom('users').selectAll().where('id', 'in', ids).orderBy('id')).execute();
}

export async function findUserByEmail(q: Q, emailLower: string): Promise<UserRow | undefined> {
  return q.selectFrom('users').selectAll().where('email_lower', '=', emailLower).executeTakeFirst();
}

export async function usernameExists(q: Q, username: string, exceptUserId?: string): Promise<boolean> {
  let query = q.selectFrom('users').select('id').where('username', '=', username);
  if (exceptUserId !== undefined) query = query.where('id', '!=', exceptUserId);
  return (await query.executeTakeFirst()) !== undefined;
}

export async function emailExists(q: Q, emailLower: string, exceptUserId?: string): Promise<boolean> {
  let query = q.selectFrom('users').select('id').where('email_lower', '=', emailLower);
  if (exceptUserId !== undefined) query = query.where('id', '!=', exceptUserId);
  return (await query.executeTakeFirst()) !== undefined;
}

export async function updateUser(q: Q, id: string, patch: Updateable<Database['users']>): Promise<void> {
  await q.updateTable('users').set(patch).where('id', '=', id).execute();
}

/** Removes the user with its sessions and keys (explicitly, not trusting ON DELETE CASCADE to be enabled). */
export async function deleteUser(q: Q, id: string): Promise<void> {
  await q.transaction().execute(async (trx) => {
    await trx.deleteFrom('refresh_tokens').where('user_id', '=', id).execute();
    await trx.deleteFrom('api_keys').where('user_id', '=', id).execute();
    await trx.deleteFrom('users').where('id', '=', id).execute();
  });
}

/** Where a page of users starts: after the user with this (created_at, id). */
export type UserPosition = Position;

/** Users in creation order (id breaks ties), `limit` of them after `after`. */
export async function listUsers(q: Q, limit: number, after?: UserPosition): Promise<UserRow[]> {
  let query = q.selectFrom('users').selectAll().orderBy('created_at').orderBy('id').limit(limit);
  if (after) {
    query = query.where((eb) =>
      eb.or([eb('created_at', '>', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('id', '>', after.id)])]),
    );
  }
  return query.execute();
}

// ---- refresh tokens

export async function insertRefreshToken(q: Q, row: Insertable<Database['refresh_tokens']>): Promise<void> {
  await q.insertInto('refresh_tokens').values(row).execute();
}

export async function findRefreshToken(q: Q, tokenHash: string): Promise<RefreshTokenRow | undefined> {
  return q.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst();
}

/** Marks the token used unless it already was: true for exactly one of two racing refreshes. */
export async function claimRefreshToken(q: Q, id: string, at: string): Promise<boolean> {
  const result = await q
    .updateTable('refresh_tokens')
    .set({ used_at: at })
    .where('id', '=', id)
    .where('used_at', 'is', null)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * True when any token of the session was revoked. Revocation is judged by
 * family, so a successor inserted while a revocation ran is dead as well.
 */
export async function isFamilyRevoked(q: Q, familyId: string): Promise<boolean> {
  const row = await q.selectFrom('refresh_tokens').select('id').where('family_id', '=', familyId).where('revoked_at', 'is not', null).limit(1).executeTakeFirst();
  return row !== undefined;
}

export async function revokeFamily(q: Q, familyId: string, at: string): Promise<void> {
  await q.updateTable('refresh_tokens').set({ revoked_at: at }).where('family_id', '=', familyId).where('revoked_at', 'is', null).execute();
}

/**
 * Deletes up to `limit` refresh tokens that stopped mattering before
 * `before`, and says how many: a used token that was never revoked (it only
 * told a reuse apart from a stranger's token), and every token of a session
 * whose newest token expired. A revoked token of a live session stays: it is
 * what keeps a successor written while the revocation ran dead
 * (isFamilyRevoked).
 */
export async function deleteEndedTokens(q: Q, before: string, limit: number): Promise<number> {
  const used = q
    .selectFrom('refresh_tokens')
    .select('id')
    .where('expires_at', '<', before)
    .where('used_at', 'is not', null)
    .where('revoked_at', 'is', null)
    .limit(limit);
  const ended = q
    .selectFrom('refresh_tokens as t')
    .select('t.id')
    .where('t.expires_at', '<', before)
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom('refresh_tokens as n').select('n.id').whereRef('n.family_id', '=', 't.family_id').where('n.expires_at', '>=', before))),
    )
    .limit(limit);
  let deleted = 0;
  for (const ids of [used, ended]) {
    const result = await q.deleteFrom('refresh_tokens').where('id', 'in', ids).executeTakeFirst();
    deleted += Number(result.numDeletedRows);
  }
  return deleted;
}

export async function revokeUserTokens(q: Q, userId: string, at: string): Promise<void> {
  await q.updateTable('refresh_tokens').set({ revoked_at: at }).where('user_id', '=', userId).where('revoked_at', 'is', null).execute();
}

/**
 * Ends every credential of the account at once: its access tokens and
 * sessions (the epoch they carry is no longer the account's, and the refresh
 * tokens are revoked besides) and its API keys (deleted). Call it in the
 * transaction of the change that ends them (a new password, a deactivation),
 * so no credential outlives a change that committed.
 */
export async function endCredentials(tx: Transaction<Database>, userId: string, at: string): Promise<void> {
  await tx.updateTable('users').set((eb) => ({ credentials_epoch: eb('credentials_epoch', '+', 1) })).where('id', '=', userId).execute();
  await revokeUserTokens(tx, userId, at);
  await tx.deleteFrom('api_keys').where('user_id', '=', userId).execute();
}

/**
 * True while the account is active and, when `epoch` is given, still in that
 * credentials epoch. On PostgreSQL the row is then held against change until
 * `tx` ends, and a change being made now is waited for, so a credential
 * inserted in `tx` cannot slip past an endCredentials (which would not see it).
 */
export async function holdCredentials(tx: Transaction<Database>, dialect: DialectName, userId: string, epoch: number | undefined): Promise<boolean> {
  let query = tx.selectFrom('users').select('id').where('id', '=', userId).where('is_active', '=', 1);
  if (epoch !== undefined) query = query.where('credentials_epoch', '=', epoch);
  return (await lockAgainstUpdate(dialect, query).executeTakeFirst()) !== undefined;
}

// ---- API keys

export async function insertApiKey(q: Q, row: Insertable<Database['api_keys']>): Promise<void> {
  await q.insertInto('api_keys').values(row).execute();
}

export async function listApiKeys(q: Q, userId: string): Promise<ApiKeyRow[]> {
  return q.selectFrom('api_keys').selectAll().where('user_id', '=', userId).orderBy('created_at').orderBy('id').execute();
}

/** True when the key existed and belonged to `userId`. */
export async function deleteApiKey(q: Q, userId: string, keyId: string): Promise<boolean> {
  const result = await q.deleteFrom('api_keys').where('id', '=', keyId).where('user_id', '=', userId).executeTakeFirst();
  return Number(result.numDeletedRows) === 1;
}
