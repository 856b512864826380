/** Who is making a request, once credentials have been checked (see guard.ts). */
export interface Principal {
  userId: string;
  isAdmin: boolean;
  /** How the caller proved it: a JWT (ours or an external issuer's), a user's API key, or the static API_KEY. */
  via: 'jwt' | 'api_key' | 'static_key';
}

/** The user id the static API_KEY acts as; it owns what it creates like any user. */
export const SERVICE_PRINCIPAL_ID = 'service';
