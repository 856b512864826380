/**
 * Sessions: login, refresh-token rotation with reuse detection, logout.
 * A session is a family of refresh tokens; each refresh uses up one token
 * and issues the next. Presenting a used token again means two parties hold
 * the session (theft), so the whole family is revoked.
 */
import { issueAccessToken } from '../../auth/tokens.js';
import { verifyAgainstDummy, verifyPassword } from '../../auth/passwords.js';
import { newRefreshToken, sha256Hex } from '../../auth/secrets.js';
import { isoAgo, isoNow } from '../../clock.js';
import type { Context } from '../../context.js';
import { Unauthorized } from '../../errors.js';
import { newId } from '../../ids.js';
import { deleteInPages } from '../../platform/sweep.js';
import * as repo from './repo.js';

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: 'bearer';
  expires_in: number;
}

/**
 * A new pair for `user` in its current credentials epoch (repo.endCredentials).
 * The account may have been deleted, deactivated or given a new password
 * since it was read (a login's password check takes a while): the refresh
 * token is stored only while the account is held as it was
 * (repo.holdCredentials, as API keys are), and otherwise the caller is
 * refused with `refused`, a 401, not a failed foreign key's 500.
 */
async function issuePair(
  ctx: Context,
  user: Pick<repo.UserRow, 'id' | 'credentials_epoch'>,
  familyId: string,
  refreshLifetimeMs: number,
  refused: () => Unauthorized,
): Promise<TokenPair> {
  const refreshToken = newRefreshToken();
  const now = ctx.clock.now();
  const epoch = Number(user.credentials_epoch);
  await ctx.db.kysely.transaction().execute(async (tx) => {
    if (!(await repo.holdCredentials(tx, ctx.db.dialect, user.id, epoch))) throw refused();
    await repo.insertRefreshToken(tx, {
      id: newId(),
      user_id: user.id,
      family_id: familyId,
      epoch,
      token_hash: sha256Hex(refreshToken),
      expires_at: new Date(now.getTime() + refreshLifetimeMs).toISOString(),
      used_at: null,
      revoked_at: null,
      created_at: now.toISOString(),
    });
  });
  const access = await issueAccessToken(ctx, user.id, epoch);
  return { access_token: access.token, refresh_token: refreshToken, token_type: 'bearer', expires_in: access.expiresIn };
}

const badLogin = () => new Unauthorized('The email or password is wrong.', 'invalid_credentials');

export async function login(ctx: Context, email: string, password: string, rememberMe: boolean): Promise<TokenPair> {
  const user = await repo.findUserByEmail(ctx.db.kysely, email.trim().toLowerCase());
  // An unknown email costs one hash verification too, so timing does not tell which emails exist.
  if (!user) {
    await verifyAgainstDummy(password);
    throw badLogin();
  }
  if (!(await verifyPassword(user.password_hash, password))) throw badLogin();
  // Said only to someone who knows the password, so it reveals nothing new.
  if (user.is_active !== 1) throw new Unauthorized('This account is deactivated.', 'account_inactive');
  const minutes = rememberMe ? ctx.config.longRefreshLifetimeMin : ctx.config.shortRefreshLifetimeMin;
  return issuePair(ctx, user, newId(), minutes * 60_000, badLogin);
}

const badRefresh = () => new Unauthorized('The refresh token is not valid.', 'invalid_refresh_token');

/**
 * Exchanges a refresh token for a new pair. The new refresh token gets the
 * same lifetime as the one it replaces (short, or long with remember_me),
 * counted from now: an active session slides, an idle one expires.
 */
export async function refresh(ctx: Context, refreshToken: string): Promise<TokenPair> {
  const q = ctx.db.kysely;
  const token = await repo.findRefreshToken(q, sha256Hex(refreshToken));
  if (!token || token.revoked_at !== null || (await repo.isFamilyRevoked(q, token.family_id))) throw badRefresh();
  const now = isoNow(ctx.clock);
  const reused = async () => {
    await repo.revokeFamily(q, token.family_id, now);
    ctx.log.warn({ userId: token.user_id, familyId: token.family_id }, 'refresh token reused: session revoked');
    return new Unauthorized('This refresh token was already used; the session has been ended.', 'refresh_token_reused');
  };
  if (token.used_at !== null) throw await reused();
  if (token.expires_at <= now) throw badRefresh();
  if (!(await repo.claimRefreshToken(q, token.id, now))) throw await reused();
  const user = await repo.findUserById(q, token.user_id);
  // A session begun before the account's credentials were ended (a login that raced a password change) is over too.
  if (!user || user.is_active !== 1 || Number(token.epoch) !== Number(user.credentials_epoch)) throw badRefresh();
  const lifetimeMs = Date.parse(token.expires_at) - Date.parse(token.created_at);
  return issuePair(ctx, user, token.family_id, lifetimeMs, badRefresh);
}

/** Ends the session the refresh token belongs to. Unknown tokens are fine: the answer is the same. */
export async function logout(ctx: Context, refreshToken: string): Promise<void> {
  const token = await repo.findRefreshToken(ctx.db.kysely, sha256Hex(refreshToken));
  if (token) await repo.revokeFamily(ctx.db.kysely, token.family_id, isoNow(ctx.clock));
}

/**
 * How long a token is kept past its own expiry: a used one still tells a
 * reuse apart from a stranger's token for that long, and a session's rows
 * stay a day after it ended.
 */
export const ENDED_TOKEN_KEEP_MS = 24 * 60 * 60_000;
const PRUNE_PAGE = 500;

/** Deletes the refresh tokens repo.deleteEndedTokens names, a page at a time; resolves with how many. */
export async function pruneEndedSessions(ctx: Context): Promise<number> {
  const before = isoAgo(ctx.clock, ENDED_TOKEN_KEEP_MS);
  const deleted = await deleteInPages(() => repo.deleteEndedTokens(ctx.db.kysely, before, PRUNE_PAGE));
  if (deleted > 0) ctx.log.info({ deleted }, 'pruned the refresh tokens of ended sessions');
  return deleted;
}
