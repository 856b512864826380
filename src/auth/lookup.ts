/**
 * The guard's reads: one indexed query per request, so a deactivated user,
 * a demoted admin or a deleted key takes effect on the very next request
 * in every process (no cache to invalidate).
 */
import type { Db } from '../platform/db/index.js';

export interface ActiveUser {
  id: string;
  isAdmin: boolean;
}

export interface KnownUser extends ActiveUser {
  isActive: boolean;
  /** users.credentials_epoch: Kiln's own tokens issued in an earlier one are dead. */
  credentialsEpoch: number;
}

export interface KeyOwner extends ActiveUser {
  keyId: string;
  lastUsedAt: string | null;
}

/** The user with this id, active or not; undefined when there is none. */
export async function findUser(db: Db, userId: string): Promise<KnownUser | undefined> {
  const row = await db.kysely.selectFrom('users').select(['id', 'is_admin', 'is_active', 'credentials_epoch']).where('id', '=', userId).executeTakeFirst();
  return row && { id: row.id, isAdmin: row.is_admin === 1, isActive: row.is_active === 1, credentialsEpoch: Number(row.credentials_epoch) };
}

/** The active owner of the API key whose SHA-256 is `keyHash`. */
export async function findKeyOwner(db: Db, keyHash: string): Promise<KeyOwner | undefined> {
  const row = await db.kysely
    .selectFrom('api_keys')
    .innerJoin('users', 'users.id', 'api_keys.user_id')
    .select(['api_keys.id as key_id', 'api_keys.last_used_at', 'users.id as user_id', 'users.is_admin'])
    .where('api_keys.key_hash', '=', keyHash)
    .where('users.is_active', '=', 1)
    .executeTakeFirst();
  return row && { id: row.user_id, isAdmin: row.is_admin === 1, keyId: row.key_id, lastUsedAt: row.last_used_at };
}

export async function markKeyUsed(db: Db, keyId: string, at: string): Promise<void> {
  await db.kysely.updateTable('api_keys').set({ last_used_at: at }).where('id', '=', keyId).execute();
}
