/**
 * Storing something of a caller's while their account may be deleted at the
 * same moment. Account deletion (users/service.ts `deleteMe`) removes the
 * account's uploads, deletes the account row, then looks for uploads again.
 * A transaction that stores an upload calls `holdAccount` first: on
 * PostgreSQL it keeps the row from being deleted until it commits (so the
 * second look finds what it stored); on SQLite transactions run one at a
 * time anyway. Either way an upload that commits after the row is gone is
 * refused, and its blobs go with the rollback.
 */
import type { Kysely, Transaction } from 'kysely';
import { Unauthorized } from '../errors.js';
import { lockAgainstDelete, type Db } from '../platform/db/index.js';
import type { Database } from '../platform/db/schema.js';
import { hasAccount, type Principal } from './principal.js';

function accountDeleted(): Unauthorized {
  return new Unauthorized('The account was deleted while this request ran; nothing was stored.', 'account_deleted');
}

/**
 * Throws 401 `account_deleted` when the caller's account is gone; callers
 * without an account (another issuer's users, the static key) pass. Outside
 * a transaction (`db.kysely`) it only checks, holding nothing.
 */
export async function holdAccount(db: Db, tx: Transaction<Database> | Kysely<Database>, principal: Principal): Promise<void> {
  if (!hasAccount(principal)) return;
  const row = await lockAgainstDelete(db.dialect, tx.selectFrom('users').select('id').where('id', '=', principal.userId)).executeTakeFirst();
  if (!row) throw accountDeleted();
}
