/**
 * Turns the credentials a request presents into a Principal: a bearer JWT
 * (ours, or an external issuer's, naming a Kiln user or one of its own), a
 * user's API key (in X-API-Key, or as a bearer token), or the static API_KEY.
 * Absent credentials give null; presented but bad ones throw Unauthorized.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Context } from '../context.js';
import { Unauthorized } from '../errors.js';
import { findKeyOwner, findUser, markKeyUsed } from './lookup.js';
import { SERVICE_PRINCIPAL_ID, type Principal } from './principal.js';
import { looksLikeApiKey, sameSecret, sha256Hex } from './secrets.js';
import type { AccessTokenVerifier } from './tokens.js';

/** last_used_at is a hint for people tidying their keys; writing it at most once a minute keeps reads read-only. */
const KEY_TOUCH_INTERVAL_MS = 60_000;

function single(value: string | string[] | undefined, name: string): string | undefined {
  if (Array.isArray(value)) throw new Unauthorized(`Send one ${name} header.`, 'invalid_credentials');
  return value;
}

async function principalForKey(ctx: Context, key: string): Promise<Principal> {
  if (ctx.config.apiKey !== undefined && sameSecret(key, ctx.config.apiKey)) {
    return { userId: SERVICE_PRINCIPAL_ID, isAdmin: true, via: 'static_key' };
  }
  if (!looksLikeApiKey(key)) throw new Unauthorized('The API key is not valid.', 'invalid_api_key');
  const owner = await findKeyOwner(ctx.db, sha256Hex(key));
  if (!owner) throw new Unauthorized('The API key is not valid.', 'invalid_api_key');
  const now = ctx.clock.now();
  if (owner.lastUsedAt === null || now.getTime() - Date.parse(owner.lastUsedAt) > KEY_TOUCH_INTERVAL_MS) {
    await markKeyUsed(ctx.db, owner.keyId, now.toISOString());
  }
  return { userId: owner.id, isAdmin: owner.isAdmin, via: 'api_key' };
}

/**
 * What another issuer's subject may be when it names no Kiln account: it becomes an owner id, so
 * printable ASCII of a sane length, and never the static key's id (which would hand over its things).
 */
const EXTERNAL_SUBJECT = /^[\x21-\x7e]{1,255}$/;

async function principalForBearer(ctx: Context, verify: AccessTokenVerifier, token: string): Promise<Principal> {
  if (looksLikeApiKey(token)) return principalForKey(ctx, token);
  const { subject, ours, epoch } = await verify(token);
  const user = await findUser(ctx.db, subject);
  if (user) {
    if (!user.isActive) throw new Unauthorized('The token belongs to a deactivated account.', 'invalid_token');
    // The account's credentials were ended after this token was issued (a new password, a deactivation).
    if (ours && epoch !== user.credentialsEpoch) throw new Unauthorized('The token was issued before the account\'s password changed or it was deactivated: sign in again.', 'token_revoked');
    return { userId: user.id, isAdmin: user.isAdmin, via: 'jwt', ...(ours ? { credentialsEpoch: epoch } : {}) };
  }
  // Kiln's own token for an account that is gone (deleted since it was issued) stops working with it.
  if (ours) throw new Unauthorized('The token does not belong to an active account.', 'invalid_token');
  // Another service's user: the issuer vouches for them, so they act as `sub` and own what they
  // create, without a Kiln account and never as an admin (admin rights live in Kiln's user table).
  if (!EXTERNAL_SUBJECT.test(subject) || subject === SERVICE_PRINCIPAL_ID) {
    throw new Unauthorized('The token\'s subject cannot name an owner in Kiln.', 'invalid_token');
  }
  return { userId: subject, isAdmin: false, via: 'external_jwt' };
}

export async function resolvePrincipal(
  ctx: Context,
  verify: AccessTokenVerifier,
  headers: IncomingHttpHeaders,
): Promise<Principal | null> {
  const authorization = single(headers.authorization, 'Authorization');
  const apiKey = single(headers['x-api-key'], 'X-API-Key');
  let principal: Principal | null = null;
  if (authorization !== undefined) {
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization);
    if (!match?.[1]) throw new Unauthorized('Send credentials as "Authorization: Bearer <token>".', 'invalid_credentials');
    principal = await principalForBearer(ctx, verify, match[1]);
  }
  if (apiKey !== undefined) {
    // Both headers present: both must be good, so a bad key is never silently ignored; the bearer wins.
    const fromKey = await principalForKey(ctx, apiKey.trim());
    principal ??= fromKey;
  }
  return principal;
}
