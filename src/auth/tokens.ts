/**
 * Access tokens: HS256 JWTs we sign with the JWT secret, and the verifier
 * that also accepts tokens from another issuer (the same shared secret, or
 * RS256/ES256 keys published at JWT_JWKS_URL).
 */
import { createRemoteJWKSet, customFetch, decodeProtectedHeader, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Context } from '../context.js';
import { Unauthorized } from '../errors.js';
import { findFetchError } from '../platform/fetch/index.js';
import { guardedWebFetch } from '../platform/fetch/web.js';

const EXTERNAL_ALGORITHMS = ['RS256', 'ES256'];

const JWKS_TIMEOUT_MS = 5000;
/** A key set is a few keys; anything much larger is not one. */
const JWKS_MAX_BYTES = 256 * 1024;

/**
 * The `iss` of the tokens Kiln signs. A token verified with a shared JWT_SECRET but without it came from
 * another service, whose users may have no account here (see credentials.ts); one with it must name a
 * live Kiln account.
 */
export const KILN_ISSUER = 'kiln';

/** The claim of Kiln's own tokens that holds the account's credentials epoch they were issued in. */
const EPOCH_CLAIM = 'kiln_epoch';

export interface AccessToken {
  token: string;
  /** Seconds until it expires. */
  expiresIn: number;
}

/**
 * A token for the account `userId` in its credentials epoch `epoch` (users.credentials_epoch):
 * when the account's epoch moves on (a new password, a deactivation), the token stops working.
 */
export async function issueAccessToken(ctx: Context, userId: string, epoch: number): Promise<AccessToken> {
  const now = Math.floor(ctx.clock.now().getTime() / 1000);
  const expiresIn = ctx.config.accessTokenLifetimeMin * 60;
  const token = await new SignJWT({ [EPOCH_CLAIM]: epoch })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(userId)
    .setIssuer(KILN_ISSUER)
    .setIssuedAt(now)
    .setExpirationTime(now + expiresIn)
    .sign(ctx.secrets.jwtSecret);
  return { token, expiresIn };
}

export interface VerifiedToken {
  subject: string;
  /** Signed by Kiln itself (`iss` is KILN_ISSUER; any HS256 token when the key is Kiln's generated one), not by another service. */
  ours: boolean;
  /** For Kiln's own tokens, the credentials epoch they were issued in (0 for tokens from before epochs). */
  epoch: number;
}

/** Claims by which another service's JWT says it is a refresh token (`{"type": "refresh"}` and the like). */
const TOKEN_KIND_CLAIMS = ['type', 'typ', 'token_type', 'token_use'];

/**
 * What another service's verified token must also be: an access token (not
 * its issuer's refresh token), from JWT_ISSUER and for JWT_AUDIENCE when those
 * are set. Throws the 401 otherwise.
 */
function checkExternal(payload: JWTPayload, config: Context['config']): void {
  for (const claim of TOKEN_KIND_CLAIMS) {
    const kind = payload[claim];
    if (typeof kind === 'string' && /refresh/i.test(kind)) throw new Unauthorized('A refresh token is not an access token.', 'invalid_token');
  }
  if (config.jwtIssuer !== undefined && payload.iss !== config.jwtIssuer) {
    throw new Unauthorized('The token is not from the issuer this server accepts (JWT_ISSUER).', 'invalid_token');
  }
  const audience = config.jwtAudience;
  if (audience !== undefined && !(payload.aud === audience || (Array.isArray(payload.aud) && payload.aud.includes(audience)))) {
    throw new Unauthorized('The token is not meant for this server (JWT_AUDIENCE).', 'invalid_token');
  }
}

/** The epoch claim of one of Kiln's own tokens: absent is 0 (issued before epochs); anything but a whole number is refused. */
function epochOf(payload: JWTPayload): number {
  const epoch = payload[EPOCH_CLAIM] ?? 0;
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) throw new Unauthorized('The access token is not valid.', 'invalid_token');
  return epoch;
}

/** Verifies a bearer JWT and returns who it names; any failure is a 401. */
export type AccessTokenVerifier = (token: string) => Promise<VerifiedToken>;

/** One verifier per app: the remote key set caches the JWKS it fetched, so it lives as long as the app. */
export function createAccessTokenVerifier(ctx: Context): AccessTokenVerifier {
  const jwks: JWTVerifyGetKey | undefined = ctx.config.jwtJwksUrl
    ? createRemoteJWKSet(new URL(ctx.config.jwtJwksUrl), {
        timeoutDuration: JWKS_TIMEOUT_MS,
        cooldownDuration: 30_000,
        // Through the outbound guard like every other request Kiln makes: a private or loopback
        // JWKS host needs FETCH_ALLOWED_HOSTS. No redirects, as jose itself asks (redirect: 'manual').
        [customFetch]: guardedWebFetch({
          allowedHosts: ctx.config.fetchAllowedHosts,
          maxBytes: JWKS_MAX_BYTES,
          connectTimeoutMs: JWKS_TIMEOUT_MS,
          totalTimeoutMs: JWKS_TIMEOUT_MS,
          maxRedirects: 0,
        }),
      })
    : undefined;

  return async (token) => {
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw new Unauthorized('The bearer token is not a JWT.', 'invalid_token');
    }
    // A token with no `exp` would never expire: one leaked from the issuer would work for ever.
    // No clock tolerance: a token that has expired, or is not valid yet, is a 401 from its first second.
    const options = { currentDate: ctx.clock.now(), requiredClaims: ['exp', 'sub'] };
    try {
      const { payload } =
        alg === 'HS256'
          ? await jwtVerify(token, ctx.secrets.jwtSecret, { ...options, algorithms: ['HS256'] })
          : jwks && alg !== undefined && EXTERNAL_ALGORITHMS.includes(alg)
            ? await jwtVerify(token, jwks, { ...options, algorithms: EXTERNAL_ALGORITHMS })
            : { payload: null };
      if (payload === null) throw new Unauthorized(`Tokens signed with "${alg ?? 'no algorithm'}" are not accepted.`, 'invalid_token');
      if (typeof payload.sub !== 'string' || payload.sub === '') throw new Unauthorized('The token names no subject.', 'invalid_token');
      // Kiln signs only HS256: a JWKS issuer that happens to call itself "kiln" is still another service.
      // Without JWT_SECRET the key was generated into DATA_DIR and no other service holds it, so every HS256
      // token is Kiln's own, those of versions before the `iss` claim included (docs/upgrading.md).
      const ours = alg === 'HS256' && (payload.iss === KILN_ISSUER || ctx.config.jwtSecret === undefined);
      if (!ours) checkExternal(payload, ctx.config);
      return { subject: payload.sub, ours, epoch: ours ? epochOf(payload) : 0 };
    } catch (err) {
      if (err instanceof Unauthorized) throw err;
      const code = (err as { code?: string }).code;
      if (code === 'ERR_JWT_EXPIRED') throw new Unauthorized('The access token has expired.', 'token_expired');
      if (code === 'ERR_JWKS_TIMEOUT' || code === 'ERR_JOSE_GENERIC' || !code || findFetchError(err)) ctx.log.warn({ err }, 'could not verify an external token');
      throw new Unauthorized('The access token is not valid.', 'invalid_token');
    }
  };
}
