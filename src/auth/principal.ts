import { Forbidden } from '../errors.js';

/** Who is making a request, once credentials have been checked (see guard.ts). */
export interface Principal {
  userId: string;
  isAdmin: boolean;
  /**
   * How the caller proved it: a JWT naming a Kiln account (ours or another issuer's), a JWT from
   * another issuer naming someone with no Kiln account (`external_jwt`), a user's API key, or the
   * static API_KEY. `external_jwt` and `static_key` callers own what they create but have no account.
   */
  via: 'jwt' | 'external_jwt' | 'api_key' | 'static_key';
  /**
   * For Kiln's own access tokens only: the account's credentials epoch the token was issued in
   * (users.credentials_epoch). A credential this request mints is made only while the account is
   * still in it, so one that raced a new password or a deactivation does not outlive it.
   */
  credentialsEpoch?: number;
}

/** The user id the static API_KEY acts as; it owns what it creates like any user. */
export const SERVICE_PRINCIPAL_ID = 'service';

/** True when the caller has a row in `users` (a profile, sessions, API keys). */
export function hasAccount(principal: Pick<Principal, 'via'>): boolean {
  return principal.via === 'jwt' || principal.via === 'api_key';
}

/**
 * Minting a credential and deleting the account take a signed-in session (an
 * access token), not an API key: a leaked key must not be able to make
 * another that outlives it, or take the account with it.
 */
export function assertSession(principal: Principal, what: string): void {
  if (principal.via === 'api_key') throw new Forbidden(`${what} needs a signed-in session: log in and send the access token, not an API key.`, 'session_required');
}
