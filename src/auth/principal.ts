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
}

/** The user id the static API_KEY acts as; it owns what it creates like any user. */
export const SERVICE_PRINCIPAL_ID = 'service';

/** True when the caller has a row in `users` (a profile, sessions, API keys). */
export function hasAccount(principal: Principal): boolean {
  return principal.via === 'jwt' || principal.via === 'api_key';
}
