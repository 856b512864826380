/**
 * Access tokens: HS256 JWTs we sign with the JWT secret, and the verifier
 * that also accepts tokens from another issuer (the same shared secret, or
 * RS256/ES256 keys published at JWT_JWKS_URL).
 */
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose';
import type { Context } from '../context.js';
import { Unauthorized } from '../errors.js';

/** Seconds of clock skew forgiven on `exp` and `nbf`, for tokens minted on another machine. */
export const CLOCK_TOLERANCE_SECONDS = 30;

const EXTERNAL_ALGORITHMS = ['RS256', 'ES256'];

export interface AccessToken {
  token: string;
  /** Seconds until it expires. */
  expiresIn: number;
}

export async function issueAccessToken(ctx: Context, userId: string): Promise<AccessToken> {
  const now = Math.floor(ctx.clock.now().getTime() / 1000);
  const expiresIn = ctx.config.accessTokenLifetimeMin * 60;
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(userId)
    .setIssuedAt(now)
    .setExpirationTime(now + expiresIn)
    .sign(ctx.secrets.jwtSecret);
  return { token, expiresIn };
}

/** Verifies a bearer JWT and returns its subject; any failure is a 401. */
export type AccessTokenVerifier = (token: string) => Promise<string>;

/** One verifier per app: the remote key set caches the JWKS it fetched, so it lives as long as the app. */
export function createAccessTokenVerifier(ctx: Context): AccessTokenVerifier {
  const jwks: JWTVerifyGetKey | undefined = ctx.config.jwtJwksUrl
    ? createRemoteJWKSet(new URL(ctx.config.jwtJwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000 })
    : undefined;

  return async (token) => {
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw new Unauthorized('The bearer token is not a JWT.', 'invalid_token');
    }
    // A token with no `exp` would never expire: one leaked from the issuer would work for ever.
    const options = { currentDate: ctx.clock.now(), clockTolerance: CLOCK_TOLERANCE_SECONDS, requiredClaims: ['exp', 'sub'] };
    try {
      const { payload } =
        alg === 'HS256'
          ? await jwtVerify(token, ctx.secrets.jwtSecret, { ...options, algorithms: ['HS256'] })
          : jwks && alg !== undefined && EXTERNAL_ALGORITHMS.includes(alg)
            ? await jwtVerify(token, jwks, { ...options, algorithms: EXTERNAL_ALGORITHMS })
            : { payload: null };
      if (payload === null) throw new Unauthorized(`Tokens signed with "${alg ?? 'no algorithm'}" are not accepted.`, 'invalid_token');
      if (typeof payload.sub !== 'string' || payload.sub === '') throw new Unauthorized('The token names no subject.', 'invalid_token');
      return payload.sub;
    } catch (err) {
      if (err instanceof Unauthorized) throw err;
      const code = (err as { code?: string }).code;
      if (code === 'ERR_JWT_EXPIRED') throw new Unauthorized('The access token has expired.', 'token_expired');
      if (code === 'ERR_JWKS_TIMEOUT' || code === 'ERR_JOSE_GENERIC' || !code) ctx.log.warn({ err }, 'could not verify an external token');
      throw new Unauthorized('The access token is not valid.', 'invalid_token');
    }
  };
}
