/** API keys: a user makes, lists and deletes their own; the key itself is shown once and stored hashed. */
import { assertSession, hasAccount, type Principal } from '../../auth/principal.js';
import { newApiKey } from '../../auth/secrets.js';
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { Forbidden, NotFound, Unauthorized } from '../../errors.js';
import { newId } from '../../ids.js';
import * as repo from './repo.js';

export interface ApiKeyView {
  id: string;
  name: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
}

function assertHasAccount(principal: Principal): void {
  // The static API_KEY is configuration and another issuer's user has no account here: their keys would have no owner row.
  if (!hasAccount(principal)) {
    const who = principal.via === 'static_key' ? 'The static API key' : 'A token from another service for someone with no Kiln account';
    throw new Forbidden(`${who} cannot manage API keys.`, 'no_account');
  }
}

export async function createApiKey(ctx: Context, principal: Principal, name: string): Promise<ApiKeyView & { key: string }> {
  assertHasAccount(principal);
  assertSession(principal, 'Creating an API key');
  const { key, prefix, hash } = newApiKey();
  const row = { id: newId(), user_id: principal.userId, name: name.trim(), prefix, key_hash: hash, created_at: isoNow(ctx.clock), last_used_at: null };
  // The guard saw the account as it was when the request came in; a new password or a deactivation
  // committed since then would not see this key to delete it. So the key is made only while the
  // account still is as the token says, in one transaction with that check.
  const minted = await ctx.db.kysely.transaction().execute(async (tx) => {
    if (!(await repo.holdCredentials(tx, ctx.db.dialect, principal.userId, principal.credentialsEpoch))) return false;
    await repo.insertApiKey(tx, row);
    return true;
  });
  if (!minted) throw new Unauthorized('The account\'s password changed or it was deactivated while this request ran: sign in again.', 'token_revoked');
  return { id: row.id, name: row.name, key, prefix, created_at: row.created_at, last_used_at: null };
}

export async function listApiKeys(ctx: Context, principal: Principal): Promise<ApiKeyView[]> {
  assertHasAccount(principal);
  const rows = await repo.listApiKeys(ctx.db.kysely, principal.userId);
  return rows.map((r) => ({ id: r.id, name: r.name, prefix: r.prefix, created_at: r.created_at, last_used_at: r.last_used_at }));
}

/** Someone else's key answers 404, exactly like a missing one. */
export async function deleteApiKey(ctx: Context, principal: Principal, keyId: string): Promise<void> {
  assertHasAccount(principal);
  if (!(await repo.deleteApiKey(ctx.db.kysely, principal.userId, keyId))) throw new NotFound('No such API key.', 'api_key_not_found');
}
