/**
 * The settings whose values have rules of their own beyond a type and a
 * range: browser origins, the JWT secret, the COLMAP command, a log file's
 * size, and the STRIPE_* and S3_* groups. Each refusal is a ConfigError that
 * says what to write instead, so a bad value stops the start, not a request.
 */
import { isIP, isIPv6 } from 'node:net';
import path from 'node:path';
import type { S3Settings } from '../platform/blobs/s3.js';
import { ConfigError, type Reader } from './env.js';

export interface StripeSettings {
  /** STRIPE_KEY: a secret (sk_) or restricted (rk_) key; undefined turns payments off (their routes answer 503). */
  key: string | undefined;
  /** STRIPE_API_BASE: scheme://host[:port] of a Stripe-compatible API (a test server); undefined: Stripe's own. */
  apiBase: string | undefined;
  /** STRIPE_WEBHOOK_SECRET: the webhook endpoint's signing secret (whsec_); undefined: the webhook answers 503. */
  webhookSecret: string | undefined;
}

/** RFC 7518 §3.2: an HS256 key of at least 256 bits. JWT_SECRET is used as UTF-8, so 32 characters are at least 32 bytes. */
export const MIN_JWT_SECRET_LENGTH = 32;

/**
 * Browser origins as CORS compares them: exactly `scheme://host[:port]`. CORS
 * matches the Origin header as a string, so `*`, a bare host or a trailing
 * slash would match nothing and quietly leave CORS off.
 */
export function checkOrigins(name: string, origins: string[]): string[] {
  for (const origin of origins) {
    let canonical: string | undefined;
    try {
      const u = new URL(origin);
      // A wildcard host (https://*.shop.example) parses, but no browser sends one: it would match nothing.
      if ((u.protocol === 'http:' || u.protocol === 'https:') && !u.hostname.includes('*')) canonical = u.origin;
    } catch {
      canonical = undefined;
    }
    if (canonical !== origin) {
      const hint = canonical ? `; write "${canonical}"` : '';
      throw new ConfigError(name, `expected origins such as https://shop.example (scheme, host, optional port; no path or "*"), got "${origin}"${hint}`);
    }
  }
  return origins;
}

/** JWT_SECRET, when set, must be long enough to be an HS256 key (unset: one is generated, see context.ts). */
export function checkJwtSecret(secret: string | undefined): string | undefined {
  if (secret !== undefined && secret.length < MIN_JWT_SECRET_LENGTH) {
    throw new ConfigError('JWT_SECRET', `must be at least ${MIN_JWT_SECRET_LENGTH} characters (an HS256 key of 256 bits or more), got ${secret.length}`);
  }
  return secret;
}

/**
 * API_KEY is an admin's credential for anyone who sends it, so it must be as
 * hard to guess as JWT_SECRET: 32 characters or more (a placeholder such as
 * the seed's `your_api_key_here` is refused), and no space or control
 * character inside it (spaces around a value are trimmed, as for every
 * setting), which an `X-API-Key` header could not carry as it is.
 */
export function checkApiKey(key: string | undefined): string | undefined {
  if (key === undefined) return key;
  if (key.length < MIN_JWT_SECRET_LENGTH) throw new ConfigError('API_KEY', `must be at least ${MIN_JWT_SECRET_LENGTH} characters (an admin key anyone may try to guess; openssl rand -hex 32 makes one), got ${key.length}`);
  if (!/^[\x21-\x7e]+$/.test(key)) throw new ConfigError('API_KEY', 'must be printable ASCII without spaces, as an X-API-Key header carries it');
  return key;
}

/**
 * JWT_ISSUER names another service's tokens; "kiln" is the `iss` of Kiln's
 * own (auth/tokens.ts KILN_ISSUER), which a setting cannot hand to anyone else.
 */
export function checkExternalIssuer(name: string, issuer: string | undefined): string | undefined {
  if (issuer === 'kiln') throw new ConfigError(name, 'must not be "kiln", the issuer of Kiln\'s own tokens');
  return issuer;
}

/**
 * The STRIPE_* variables. A publishable key (pk_) is the usual mistake: it
 * cannot create payment intents, so it is refused here rather than at the
 * first payment. The client appends /v1/ to STRIPE_API_BASE itself, so a
 * path there would be silently dropped: it is refused too.
 */
export function readStripe(r: Reader): StripeSettings {
  const key = r.raw('STRIPE_KEY');
  if (key !== undefined && !/^(sk|rk)_[A-Za-z0-9_]+$/.test(key)) {
    throw new ConfigError('STRIPE_KEY', 'expected a secret key (sk_test_…, sk_live_…) or a restricted key (rk_…), not a publishable key');
  }
  const apiBase = r.url('STRIPE_API_BASE', ['http:', 'https:']);
  if (apiBase !== undefined) {
    const u = new URL(apiBase);
    if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.username !== '') {
      throw new ConfigError('STRIPE_API_BASE', `expected scheme://host[:port] only (the client adds /v1/), got "${apiBase}"`);
    }
  }
  const webhookSecret = r.raw('STRIPE_WEBHOOK_SECRET');
  if (webhookSecret !== undefined && !/^whsec_[A-Za-z0-9_]+$/.test(webhookSecret)) {
    throw new ConfigError('STRIPE_WEBHOOK_SECRET', 'expected the webhook endpoint\'s signing secret (whsec_…), as the Stripe dashboard or `stripe listen` shows it');
  }
  return { key, apiBase, webhookSecret };
}

/**
 * COLMAP_BIN: a bare command name (found on PATH when run) or an absolute
 * path. A relative path would depend on the directory Kiln was started from.
 */
export function checkColmapBin(bin: string): string {
  if (bin.includes('/') && !path.isAbsolute(bin)) {
    throw new ConfigError('COLMAP_BIN', `expected a command name such as colmap or an absolute path, got "${bin}"`);
  }
  return bin;
}

/** Size with an optional k/m/g suffix, as pino-roll takes it ("10m"); 0 would turn rotation by size off without a word. */
export function checkSize(name: string, v: string): string {
  if (!/^0*[1-9]\d*[kmg]?$/i.test(v)) throw new ConfigError(name, `expected a size of at least 1 such as 10m, got "${v}"`);
  return v.toLowerCase();
}

/**
 * Host names and IP literals, matched exactly against a request's host: a URL,
 * a port or a path in an entry would never match anything, so it is refused
 * rather than ignored. An IPv6 address may be written bare or in brackets.
 */
export function checkHosts(name: string, hosts: string[]): string[] {
  return hosts.map((entry) => {
    const host = entry.toLowerCase();
    const bracketed = /^\[(.+)\]$/.exec(host)?.[1];
    const ok = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$/.test(host) || isIP(host) !== 0 || (bracketed !== undefined && isIPv6(bracketed));
    if (!ok) throw new ConfigError(name, `expected host names or IP addresses (no scheme, port or path), got "${entry}"`);
    return host;
  });
}

/** A Redis key prefix: letters, digits, `_`, `.` and `-`, so that keys stay plain and globs match only it. */
export function checkRedisPrefix(name: string, v: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(v)) throw new ConfigError(name, `expected 1-64 letters, digits, "_", "." or "-", got "${v}"`);
  return v;
}

/** The S3_* variables; read only when STORAGE=s3, where S3_BUCKET is required. */
export function readS3(r: Reader): S3Settings {
  const bucket = r.raw('S3_BUCKET');
  if (!bucket) throw new ConfigError('S3_BUCKET', 'is required when STORAGE=s3');
  // S3's own rule for bucket names (3-63 characters, lower case, digits, dots and hyphens).
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new ConfigError('S3_BUCKET', `is not a valid bucket name: "${bucket}"`);
  const endpoint = r.url('S3_ENDPOINT', ['http:', 'https:']);
  const accessKeyId = r.raw('S3_ACCESS_KEY_ID');
  const secretAccessKey = r.raw('S3_SECRET_ACCESS_KEY');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new ConfigError(accessKeyId === undefined ? 'S3_ACCESS_KEY_ID' : 'S3_SECRET_ACCESS_KEY', 'must be set together with its pair, or neither for the AWS credential chain');
  }
  const prefix = r.string('S3_PREFIX', '').replace(/^\/+|\/+$/g, '');
  const segmentsOk = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(prefix) && !prefix.split('/').some((seg) => seg === '.' || seg === '..');
  if (prefix !== '' && !segmentsOk) throw new ConfigError('S3_PREFIX', `expected path segments of letters, digits, '.', '_' and '-', got "${prefix}"`);
  return {
    bucket,
    region: r.string('S3_REGION', 'us-east-1'),
    endpoint,
    accessKeyId,
    secretAccessKey,
    // An S3-compatible store behind its own endpoint almost always wants the bucket in the path.
    forcePathStyle: r.bool('S3_FORCE_PATH_STYLE', endpoint !== undefined),
    prefix: prefix === '' ? '' : `${prefix}/`,
  };
}
