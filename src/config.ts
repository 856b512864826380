/**
 * Every setting Kiln reads, parsed and validated once from the environment
 * (and a `.env` file in the working directory), then passed around typed.
 * A bad value throws ConfigError naming the variable; `main.ts` prints that
 * one line and exits. How one variable is read is config/env.ts; the rules
 * of the settings that have more than a type and a range, config/checks.ts.
 */
import path from 'node:path';
import type { S3Settings } from './platform/blobs/s3.js';
import { checkApiKey, checkColmapBin, checkExternalIssuer, checkHosts, checkJwtSecret, checkOrigins, checkRedisPrefix, checkSize, readS3, readStripe, type StripeSettings } from './config/checks.js';
import { ConfigError, readDotenv, Reader, type Env } from './config/env.js';

export { MIN_JWT_SECRET_LENGTH, type StripeSettings } from './config/checks.js';
export { ConfigError, readDotenv, type Env } from './config/env.js';

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** undefined: SQLite file `kiln.db` in dataDir. */
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  /** The first part of every Redis key (jobs, rate limits, cache): one Redis may serve several deployments. */
  redisPrefix: string;
  /** undefined: generated once and kept in dataDir (see context.ts). */
  jwtSecret: string | undefined;
  jwtJwksUrl: string | undefined;
  /** JWT_ISSUER: when set, another service's token must carry this `iss`. */
  jwtIssuer: string | undefined;
  /** JWT_AUDIENCE: when set, another service's token must name this in `aud`. */
  jwtAudience: string | undefined;
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
  /** SHUTDOWN_GRACE_SECONDS: at a stop, how long requests in flight, and then running jobs, each get to finish. */
  shutdownGraceSeconds: number;
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
  /** ORDER_HOLD_MINUTES: an unpaid order unchanged this long is cancelled and its stock returned; 0 never (docs/shop.md). */
  orderHoldMinutes: number;
  /** JOB_RETENTION_DAYS: a finished job's row is deleted this many days after it finished; 0 keeps them (docs/jobs.md). */
  jobRetentionDays: number;
  /** AI_EDIT_RETENTION_DAYS: AI-edit uploads and processes unused this many days are deleted; 0 keeps them (docs/ai-edits.md). */
  aiEditRetentionDays: number;
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

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Upper bounds for durations. Beyond them a value breaks later, not at the
 * start: a Date past year 275760 is "Invalid time value", and Node's
 * setTimeout fires at once for more than 2^31-1 ms (24.8 days).
 */
const TEN_YEARS_MIN = 10 * 365 * 24 * 60;
const TEN_YEARS_S = TEN_YEARS_MIN * 60;
const TEN_YEARS_DAYS = 10 * 365;
/** A provider call of a day at most; its job timeout (this plus a minute, in ms) stays well under setTimeout's 2^31-1 ms. */
const MAX_OPENAI_TIMEOUT_S = 24 * 60 * 60;
/** lru-cache allocates its index for `max` entries up front: a million is ~50 MB, a billion exhausts the heap. */
const MAX_CACHE_ITEMS = 1_000_000;

/**
 * LOG_MAX_SIZE with its unit (k, m or g). pino-roll reads a bare number as
 * megabytes, so LOG_MAX_SIZE=10485760, meant as bytes, would roll at 10 TB;
 * a number without a unit is refused rather than guessed at.
 */
function checkLogMaxSize(v: string): string {
  if (/^\d+$/.test(v)) throw new ConfigError('LOG_MAX_SIZE', `expected a size with its unit, k, m or g (10m is 10 MB), got "${v}"`);
  return checkSize('LOG_MAX_SIZE', v);
}

export function loadConfig(processEnv: Env = process.env, cwd = process.cwd()): Config {
  const env: Env = { ...readDotenv(cwd), ...processEnv };
  const r = new Reader(env);
  const storage = r.oneOf('STORAGE', ['fs', 's3'] as const, 'fs');
  const stripe = readStripe(r);
  const config: Config = {
    host: r.string('HOST', '127.0.0.1'),
    port: r.int('PORT', 8000, 0, 65535),
    dataDir: path.resolve(cwd, r.string('DATA_DIR', './data')),
    databaseUrl: r.url('DATABASE_URL', ['postgres:', 'postgresql:', 'sqlite:']),
    redisUrl: r.url('REDIS_URL', ['redis:', 'rediss:']),
    redisPrefix: checkRedisPrefix('REDIS_PREFIX', r.string('REDIS_PREFIX', 'kiln')),
    jwtSecret: checkJwtSecret(r.raw('JWT_SECRET')),
    jwtJwksUrl: r.url('JWT_JWKS_URL', ['http:', 'https:']),
    jwtIssuer: checkExternalIssuer('JWT_ISSUER', r.raw('JWT_ISSUER')),
    jwtAudience: r.raw('JWT_AUDIENCE'),
    adminEmail: r.raw('ADMIN_EMAIL'),
    adminPassword: r.raw('ADMIN_PASSWORD'),
    apiKey: checkApiKey(r.raw('API_KEY')),
    maxUploadSize: r.int('MAX_UPLOAD_SIZE', 10 * 1024 * 1024, 1),
    maxFilesPerOrder: r.int('MAX_FILES_PER_ORDER', 4, 1, 100),
    maxImagePixels: r.int('MAX_IMAGE_PIXELS', 50_000_000, 1),
    jpegQuality: r.int('JPEG_QUALITY', 85, 1, 100),
    allowedOrigins: checkOrigins('ALLOWED_ORIGINS', r.list('ALLOWED_ORIGINS')),
    logLevel: r.oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
    logFile: r.raw('LOG_FILE'),
    logMaxSize: checkLogMaxSize(r.string('LOG_MAX_SIZE', '10m')),
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
    shutdownGraceSeconds: r.int('SHUTDOWN_GRACE_SECONDS', 10, 1, 3600),
    fetchAllowedHosts: checkHosts('FETCH_ALLOWED_HOSTS', r.list('FETCH_ALLOWED_HOSTS')),
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
    stripe,
    // Online payments on: an hour, as shops commonly hold stock for a checkout. Off: orders wait for an admin, however long.
    orderHoldMinutes: r.int('ORDER_HOLD_MINUTES', stripe.key === undefined ? 0 : 60, 0, TEN_YEARS_MIN),
    jobRetentionDays: r.int('JOB_RETENTION_DAYS', 30, 0, TEN_YEARS_DAYS),
    aiEditRetentionDays: r.int('AI_EDIT_RETENTION_DAYS', 0, 0, TEN_YEARS_DAYS),
    cacheTtlSeconds: r.int('CACHE_TTL_SECONDS', 3600, 1, TEN_YEARS_S),
    cacheMaxItems: r.int('CACHE_MAX_ITEMS', 1000, 1, MAX_CACHE_ITEMS),
    trustProxy: r.int('TRUST_PROXY', 0, 0, 10),
    pipeline: {
      colmapBin: checkColmapBin(r.string('COLMAP_BIN', 'colmap')),
      // A day at most: the job's timer is a setTimeout, which fires at once past 2^31-1 ms.
      timeoutMinutes: r.int('PIPELINE_TIMEOUT_MINUTES', 120, 1, 24 * 60),
    },
  };
  // Read by src/threadpool.ts before anything else runs; libuv takes a value it cannot parse as one thread, without a word.
  r.int('UV_THREADPOOL_SIZE', 4, 1, 1024);
  if (config.webhookUrl && !config.webhookSecret) {
    throw new ConfigError('WEBHOOK_SECRET', 'must be set when WEBHOOK_URL is set');
  }
  return config;
}
