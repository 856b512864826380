/**
 * Every setting Kiln reads, parsed and validated once from the environment
 * (and a `.env` file in the working directory), then passed around typed.
 * A bad value throws ConfigError naming the variable; `main.ts` prints that
 * one line and exits.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { S3Settings } from './platform/blobs/s3.js';
import { parse as parseDotenv } from 'dotenv';

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

export type Env = Record<string, string | undefined>;

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** undefined: SQLite file `kiln.db` in dataDir. */
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  /** undefined: generated once and kept in dataDir (see context.ts). */
  jwtSecret: string | undefined;
  jwtJwksUrl: string | undefined;
  adminEmail: string | undefined;
  adminPassword: string | undefined;
  apiKey: string | undefined;
  maxUploadSize: number;
  maxFilesPerOrder: number;
  maxImagePixels: number;
  jpegQuality: number;
  allowedOrigins: string[];
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  logFile: string | undefined;
  logMaxSize: string;
  logKeep: number;
  accessTokenLifetimeMin: number;
  shortRefreshLifetimeMin: number;
  longRefreshLifetimeMin: number;
  rateLimitAuth: number;
  rateLimitUpload: number;
  rateLimitDefault: number;
  galleryPublicRead: boolean;
  /** DURABLE_WRITES: stored files and SQLite commits reach the disk before an answer says they are kept. */
  durableWrites: boolean;
  /** Where blobs live: 'fs', the local disk under DATA_DIR, or 's3', the bucket that `s3` describes (set only then). */
  storage: 'fs' | 's3';
  s3: S3Settings | undefined;
  jobConcurrency: number;
  fetchAllowedHosts: string[];
  eanProviderUrl: string;
  webhookUrl: string | undefined;
  webhookSecret: string | undefined;
  signedUrlTtl: number;
  openai: {
    apiKey: string | undefined;
    baseUrl: string | undefined;
    imageModel: string;
    timeoutSeconds: number;
  };
  /** Payments (modules/payments): off while `key` is unset. */
  stripe: StripeSettings;
  cacheTtlSeconds: number;
  cacheMaxItems: number;
  /** Number of reverse proxies in front of Kiln whose X-Forwarded-For is trusted (0: none). */
  trustProxy: number;
  /** Photogrammetry pipeline (modules/pipeline, docs/pipeline.md). */
  pipeline: {
    /** COLMAP_BIN: a command name looked up on PATH (default `colmap`) or an absolute path. */
    colmapBin: string;
    /** PIPELINE_TIMEOUT_MINUTES: the most one reconstruction may run before it is stopped. */
    timeoutMinutes: number;
  };
}

export interface StripeSettings {
  /** STRIPE_KEY: a secret (sk_) or restricted (rk_) key; undefined turns payments off (their routes answer 503). */
  key: string | undefined;
  /** STRIPE_API_BASE: scheme://host[:port] of a Stripe-compatible API (a test server); undefined: Stripe's own. */
  apiBase: string | undefined;
  /** STRIPE_WEBHOOK_SECRET: the webhook endpoint's signing secret (whsec_); undefined: the webhook answers 503. */
  webhookSecret: string | undefined;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Upper bounds for durations. Beyond them a value breaks later, not at the
 * start: a Date past year 275760 is "Invalid time value", and Node's
 * setTimeout fires at once for more than 2^31-1 ms (24.8 days).
 */
const TEN_YEARS_MIN = 10 * 365 * 24 * 60;
const TEN_YEARS_S = TEN_YEARS_MIN * 60;
/** A provider call of a day at most; its job timeout (this plus a minute, in ms) stays well under setTimeout's 2^31-1 ms. */
const MAX_OPENAI_TIMEOUT_S = 24 * 60 * 60;
/** lru-cache allocates its index for `max` entries up front: a million is ~50 MB, a billion exhausts the heap. */
const MAX_CACHE_ITEMS = 1_000_000;
/** RFC 7518 §3.2: an HS256 key of at least 256 bits. JWT_SECRET is used as UTF-8, so 32 characters are at least 32 bytes. */
export const MIN_JWT_SECRET_LENGTH = 32;

/** Reads `.env` from `dir` without overriding variables that are already set. */
export function readDotenv(dir: string): Env {
  const file = path.join(dir, '.env');
  if (!existsSync(file)) return {};
  return parseDotenv(readFileSync(file));
}

class Reader {
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  int(name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v)) throw new ConfigError(name, `expected a whole number, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
    return n;
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name)?.toLowerCase();
    if (v === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    throw new ConfigError(name, `expected true or false, got "${v}"`);
  }

  list(name: string): string[] {
    const v = this.raw(name);
    if (v === undefined) return [];
    return v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  }

  url(name: string, protocols: string[]): string | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      throw new ConfigError(name, 'is not a valid URL');
    }
    if (!protocols.includes(u.protocol)) {
      throw new ConfigError(name, `must start with ${protocols.map((p) => p + '//').join(' or ')}`);
    }
    return v;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const v = this.raw(name)?.toLowerCase();
    if (v === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(v)) {
      throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${v}"`);
    }
    return v as T;
  }
}

/**
 * Browser origins as CORS compares them: exactly `scheme://host[:port]`. CORS
 * matches the Origin header as a string, so `*`, a bare host or a trailing
 * slash would match nothing and quietly leave CORS off.
 */
function checkOrigins(name: string, origins: string[]): string[] {
  for (const origin of origins) {
    let canonical: string | undefined;
    try {
      const u = new URL(origin);
      if (u.protocol === 'http:' || u.protocol === 'https:') canonical = u.origin;
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
function checkJwtSecret(secret: string | undefined): string | undefined {
  if (secret !== undefined && secret.length < MIN_JWT_SECRET_LENGTH) {
    throw new ConfigError('JWT_SECRET', `must be at least ${MIN_JWT_SECRET_LENGTH} characters (an HS256 key of 256 bits or more), got ${secret.length}`);
  }
  return secret;
}

/**
 * The STRIPE_* variables. A publishable key (pk_) is the usual mistake: it
 * cannot create payment intents, so it is refused here rather than at the
 * first payment. The client appends /v1/ to STRIPE_API_BASE itself, so a
 * path there would be silently dropped: it is refused too.
 */
function readStripe(r: Reader): StripeSettings {
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
  return { key, apiBase, webhookSecret: r.raw('STRIPE_WEBHOOK_SECRET') };
}

/**
 * COLMAP_BIN: a bare command name (found on PATH when run) or an absolute
 * path. A relative path would depend on the directory Kiln was started from.
 */
function checkColmapBin(bin: string): string {
  if (bin.includes('/') && !path.isAbsolute(bin)) {
    throw new ConfigError('COLMAP_BIN', `expected a command name such as colmap or an absolute path, got "${bin}"`);
  }
  return bin;
}

/** Size with an optional k/m/g suffix, as pino-roll takes it ("10m"). */
function checkSize(name: string, v: string): string {
  if (!/^\d+[kmg]?$/i.test(v)) throw new ConfigError(name, `expected a size such as 10m, got "${v}"`);
  return v.toLowerCase();
}

/** The S3_* variables; read only when STORAGE=s3, where S3_BUCKET is required. */
function readS3(r: Reader): S3Settings {
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

export function loadConfig(processEnv: Env = process.env, cwd = process.cwd()): Config {
  const env: Env = { ...readDotenv(cwd), ...processEnv };
  const r = new Reader(env);
  const storage = r.oneOf('STORAGE', ['fs', 's3'] as const, 'fs');
  const config: Config = {
    host: r.string('HOST', '127.0.0.1'),
    port: r.int('PORT', 8000, 0, 65535),
    dataDir: path.resolve(cwd, r.string('DATA_DIR', './data')),
    databaseUrl: r.url('DATABASE_URL', ['postgres:', 'postgresql:', 'sqlite:']),
    redisUrl: r.url('REDIS_URL', ['redis:', 'rediss:']),
    jwtSecret: checkJwtSecret(r.raw('JWT_SECRET')),
    jwtJwksUrl: r.url('JWT_JWKS_URL', ['http:', 'https:']),
    adminEmail: r.raw('ADMIN_EMAIL'),
    adminPassword: r.raw('ADMIN_PASSWORD'),
    apiKey: r.raw('API_KEY'),
    maxUploadSize: r.int('MAX_UPLOAD_SIZE', 10 * 1024 * 1024, 1),
    maxFilesPerOrder: r.int('MAX_FILES_PER_ORDER', 4, 1, 100),
    maxImagePixels: r.int('MAX_IMAGE_PIXELS', 50_000_000, 1),
    jpegQuality: r.int('JPEG_QUALITY', 85, 1, 100),
    allowedOrigins: checkOrigins('ALLOWED_ORIGINS', r.list('ALLOWED_ORIGINS')),
    logLevel: r.oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
    logFile: r.raw('LOG_FILE'),
    logMaxSize: checkSize('LOG_MAX_SIZE', r.string('LOG_MAX_SIZE', '10m')),
    logKeep: r.int('LOG_KEEP', 7, 1, 1000),
    accessTokenLifetimeMin: r.int('ACCESS_TOKEN_LIFETIME', 15, 1, TEN_YEARS_MIN),
    shortRefreshLifetimeMin: r.int('SHORT_REFRESH_TOKEN_LIFETIME', 60, 1, TEN_YEARS_MIN),
    longRefreshLifetimeMin: r.int('LONG_REFRESH_TOKEN_LIFETIME', 43200, 1, TEN_YEARS_MIN),
    rateLimitAuth: r.int('RATE_LIMIT_AUTH', 5),
    rateLimitUpload: r.int('RATE_LIMIT_UPLOAD', 10),
    rateLimitDefault: r.int('RATE_LIMIT_DEFAULT', 100),
    galleryPublicRead: r.bool('GALLERY_PUBLIC_READ', true),
    durableWrites: r.bool('DURABLE_WRITES', false),
    storage,
    s3: storage === 's3' ? readS3(r) : undefined,
    jobConcurrency: r.int('JOB_CONCURRENCY', 2, 1, 256),
    fetchAllowedHosts: r.list('FETCH_ALLOWED_HOSTS').map((h) => h.toLowerCase()),
    eanProviderUrl: r.url('EAN_PROVIDER_URL', ['http:', 'https:']) ?? 'https://world.openfoodfacts.org',
    webhookUrl: r.url('WEBHOOK_URL', ['http:', 'https:']),
    webhookSecret: r.raw('WEBHOOK_SECRET'),
    // Ten years at most, a bound like CACHE_TTL_SECONDS's: a link's `expires` (unix seconds) stays far below 2^53, where the strict check of a link would refuse it.
    signedUrlTtl: r.int('SIGNED_URL_TTL', 3600, 1, TEN_YEARS_S),
    openai: {
      apiKey: r.raw('OPENAI_API_KEY'),
      baseUrl: r.url('OPENAI_BASE_URL', ['http:', 'https:']),
      imageModel: r.string('OPENAI_IMAGE_MODEL', 'gpt-image-1'),
      timeoutSeconds: r.int('OPENAI_TIMEOUT_SECONDS', 120, 1, MAX_OPENAI_TIMEOUT_S),
    },
    stripe: readStripe(r),
    cacheTtlSeconds: r.int('CACHE_TTL_SECONDS', 3600, 1, TEN_YEARS_S),
    cacheMaxItems: r.int('CACHE_MAX_ITEMS', 1000, 1, MAX_CACHE_ITEMS),
    trustProxy: r.int('TRUST_PROXY', 0, 0, 10),
    pipeline: {
      colmapBin: checkColmapBin(r.string('COLMAP_BIN', 'colmap')),
      // A day at most: the job's timer is a setTimeout, which fires at once past 2^31-1 ms.
      timeoutMinutes: r.int('PIPELINE_TIMEOUT_MINUTES', 120, 1, 24 * 60),
    },
  };
  if (config.webhookUrl && !config.webhookSecret) {
    throw new ConfigError('WEBHOOK_SECRET', 'must be set when WEBHOOK_URL is set');
  }
  return config;
}
