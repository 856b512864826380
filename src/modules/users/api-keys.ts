/** API keys: a user makes, lists and deletes their own; the key itself is shown once and stored hashed. */
import { assertSession, hasAccount, type Principal } from '../../auth/principal.js';
import { newApiKey } from '../../auth/secrets.js';
import { isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { Forbidden, NotFound } from '../../errors.js';
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
  await repo.insertApiKey(ctx.db.kysely, row);
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
