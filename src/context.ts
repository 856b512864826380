/**
 * The one Context: every adapter a service needs (database, blobs, cache,
 * logger, metrics, clock, secrets), built once from the Config and passed to
 * services as an argument. Tests build their own over a temp directory.
 */
import { createHmac, webcrypto } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import { ConfigError, type Config } from './config.js';
import { failureOf } from './config/env.js';
import { newSecret } from './ids.js';
import type { BlobStore } from './platform/blobs/index.js';
import { CachingBlobStore } from './platform/blobs/cached.js';
import { FsBlobStore } from './platform/blobs/fs.js';
import { isMissing, makeDirectorySync, sweepStaleFiles, syncDirectories, syncFile } from './platform/files.js';
import { SMALL_FILE_BYTES } from './images/serve.js';
import { migrateToLatest, openDatabase, type Db } from './platform/db/index.js';
import { localBroadcast, redisBroadcast, type Broadcast } from './platform/broadcast.js';
import { createCache, type TtlCache } from './platform/cache/index.js';
import { createJobRunner, type JobRole, type JobRunner } from './platform/jobs/index.js';
import { closeLogger, createLogger } from './platform/log/index.js';
import { createMetrics, type Metrics } from './platform/metrics/index.js';

export interface Secrets {
  /** HS256 key for access tokens (JWT_SECRET, or generated once into DATA_DIR), imported for HMAC-SHA-256 once. */
  jwtSecret: webcrypto.CryptoKey;
  /** HMAC key for signed file links, derived from the JWT secret so every process that shares one shares both. */
  linkSecret: Uint8Array;
}

export interface Context {
  config: Config;
  db: Db;
  blobs: BlobStore;
  /** TTL cache in front of the database (Redis when REDIS_URL is set, else in-process). */
  cache: TtlCache;
  log: Logger;
  metrics: Metrics;
  clock: Clock;
  secrets: Secrets;
  /** Background jobs; modules register their kinds at startup, `kiln serve` / `kiln worker` start it. */
  jobs: JobRunner;
  /** Tells every process of the deployment (Redis pub/sub with REDIS_URL) that something it may keep in memory is gone. */
  broadcast: Broadcast;
  /** DATA_DIR/tmp: uploads stream here before they are validated and moved. */
  tmpDir: string;
  /** Runs every registered closer in reverse order of registration, once: a later call waits for the first. */
  close(): Promise<void>;
  /** Registers a resource to release on close (a queue, a pool, a timer). */
  onClose(closer: () => Promise<void> | void): void;
}

export interface ContextOptions {
  clock?: Clock;
  log?: Logger;
  /** Where the context's own logger writes when LOG_FILE is not set (createLogger); default stdout. */
  logTo?: 'stdout' | 'stderr';
  /** Skip migrations (the `migrate` command runs them itself). */
  migrate?: boolean;
  /** `worker`: with REDIS_URL, this process runs jobs from Redis once `jobs.start()` is called. */
  jobRole?: JobRole;
  /** Leave temp files a dead process left in DATA_DIR/tmp (a dry run removes nothing); default false. */
  keepTempFiles?: boolean;
  /**
   * A command that neither serves nor runs jobs (`migrate`, `users create`, `blobs sweep`): it opens no Redis
   * connection, whatever REDIS_URL says, so an unreachable Redis neither slows it nor fills its output. Its cache
   * is in memory and its broadcast reaches itself only; a job it enqueued would wait in the database for a
   * worker's reconcile. Default false.
   */
  oneShot?: boolean;
}

/** A secret's draft untouched this long was left by a process killed while it made the secret. */
const STALE_DRAFT_MS = 60_000;

/**
 * Reads a secret from DATA_DIR/secrets/<name>, creating it on first use. The
 * value is written whole to a file of its own, flushed, then linked under the
 * secret's name: `link` fails when the name exists, so two processes starting
 * together agree on one value, and a process killed midway leaves either no
 * secret or a whole one, never an empty file (its draft, if any, goes at a
 * later start). An empty one (what a kill left before this was so) never
 * signed anything: it is replaced.
 */
async function storedSecret(dataDir: string, name: string, log: Logger): Promise<string> {
  const dir = path.join(dataDir, 'secrets');
  const file = path.join(dir, name);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // A draft outlives its process only when a kill came between writing and removing it (another process's
  // lives for milliseconds). Only tidiness: one that cannot be removed must not stop a start that can read its secret.
  await sweepStaleFiles(dir, STALE_DRAFT_MS, Date.now(), (entry) => entry.startsWith(`${name}.`) && entry.endsWith('.tmp')).catch((err: unknown) =>
    log.warn({ err, dir }, 'could not remove a stale draft of a secret'),
  );
  for (let attempt = 0; attempt < 3; attempt++) {
    const existing = await readFile(file, 'utf8').then((text) => text.trim(), (err: unknown) => (isMissing(err) ? undefined : Promise.reject(err)));
    if (existing) return existing;
    if (existing === '') {
      log.warn({ file }, 'the stored secret is empty (a start was cut short while writing it): making a new one');
      await unlink(file).catch((err: unknown) => (isMissing(err) ? undefined : Promise.reject(err)));
    }
    const draft = `${file}.${newSecret(6)}.tmp`;
    try {
      await writeFile(draft, newSecret(48), { flag: 'wx', mode: 0o600 });
      await syncFile(draft);
      await link(draft, file);
      await syncDirectories([dir]);
    } catch (err) {
      // Another process linked its secret first: read that one.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      await unlink(draft).catch(() => undefined);
    }
  }
  throw new Error(`could not read or create the secret ${file}`);
}

/** The local disk under DATA_DIR, or the S3 bucket of STORAGE=s3 (its SDK loaded only then). */
export async function openBlobStore(config: Config, tmpDir: string, closers: Array<() => Promise<void> | void>): Promise<BlobStore> {
  if (!config.s3) return new FsBlobStore(path.join(config.dataDir, 'blobs'), tmpDir, config.durableWrites);
  const { createS3BlobStore } = await import('./platform/blobs/s3.js');
  const store = await createS3BlobStore(config.s3);
  closers.push(() => store.client.destroy());
  return store;
}

/** Temp files (staged uploads, blob writes in progress) untouched this long were left by a process that died. */
const STALE_TEMP_MS = 60 * 60 * 1000;

/**
 * Opens the database and asks it one query, so a start that cannot have it
 * says so in one line naming the setting to look at (DATABASE_URL, or
 * DATA_DIR for the default SQLite file), not as a failed migration.
 */
async function reachDatabase(config: Config): Promise<Db> {
  let db: Db | undefined;
  try {
    db = openDatabase(config.databaseUrl, config.dataDir, { durable: config.durableWrites });
    await db.ping();
    return db;
  } catch (err) {
    await db?.close().catch(() => undefined);
    throw new ConfigError(config.databaseUrl ? 'DATABASE_URL' : 'DATA_DIR', `cannot open the database: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export async function createContext(config: Config, options: ContextOptions = {}): Promise<Context> {
  const closers: Array<() => Promise<void> | void> = [];
  const tmpDir = path.join(config.dataDir, 'tmp');
  try {
    makeDirectorySync(tmpDir);
  } catch (err) {
    throw new ConfigError('DATA_DIR', `cannot create ${tmpDir} (${failureOf(err)})`);
  }
  // A DATA_DIR that exists but takes no write (a read-only mount) would serve, and fail every write.
  try {
    accessSync(tmpDir, constants.W_OK);
  } catch (err) {
    throw new ConfigError('DATA_DIR', `cannot write in ${tmpDir} (${failureOf(err)})`);
  }

  const log = options.log ?? createLogger(config, options.logTo);
  // Registered first so it runs last: every other closer may still log. A logger passed in is its owner's to close.
  if (!options.log) closers.push(() => closeLogger(log));
  const swept = options.keepTempFiles ? 0 : await sweepStaleFiles(tmpDir, STALE_TEMP_MS);
  if (swept > 0) log.info({ files: swept, dir: tmpDir }, 'removed temp files left by an earlier run');
  const db = await reachDatabase(config);
  closers.push(() => db.close());
  if (options.migrate !== false) {
    // An upgrade's start may spend a while here: the log says on what.
    const started = performance.now();
    const applied = await migrateToLatest(db);
    if (applied.length > 0) log.info({ migrations: applied, ms: Math.round(performance.now() - started) }, 'applied database migrations');
  }

  // A secret that cannot be made (a full disk, a secrets directory Kiln may not write in) stops the start naming where.
  const jwtSecretText =
    config.jwtSecret ??
    (await storedSecret(config.dataDir, 'jwt_secret', log).catch((err: unknown) => {
      throw new ConfigError('DATA_DIR', `cannot make the generated JWT secret in ${path.join(config.dataDir, 'secrets')} (${failureOf(err)}); free the space, mend the permissions, or set JWT_SECRET`);
    }));
  // A generated secret is this DATA_DIR's alone: other processes on the same database or Redis, with their
  // own DATA_DIR, would refuse this one's tokens (401) and signed links (403).
  // A one-shot command signs nothing, so the warning is for the processes that serve and run jobs.
  if (!options.oneShot && config.jwtSecret === undefined && (config.redisUrl !== undefined || config.databaseUrl?.startsWith('postgres'))) {
    log.warn('JWT_SECRET is not set: this process uses a secret generated into DATA_DIR/secrets. Processes that share a database or Redis must share one JWT_SECRET, or each refuses the others\' tokens and signed links');
  }
  const secretBytes = new TextEncoder().encode(jwtSecretText);
  const linkSecret = new Uint8Array(createHmac('sha256', secretBytes).update('kiln signed links').digest());
  // Imported once: given the raw bytes, jose imports a key on every token it signs or checks (~20 µs a request).
  const jwtSecret = await webcrypto.subtle.importKey('raw', secretBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);

  const blobs: BlobStore = new CachingBlobStore(await openBlobStore(config, tmpDir, closers), { maxItemBytes: SMALL_FILE_BYTES });
  const clock = options.clock ?? systemClock;
  const live = options.oneShot ? { ...config, redisUrl: undefined } : config;
  const jobs = createJobRunner(live, { db, log, clock }, options.jobRole);
  // Registered after the database, so closing stops the jobs before the database goes.
  // Running jobs get the grace of SHUTDOWN_GRACE_SECONDS: one cut off runs again later (an AI edit, paid twice).
  closers.push(() => jobs.stop(live.shutdownGraceSeconds * 1000));
  const cache = createCache(live, { clock: options.clock, log });
  closers.push(() => cache.close());
  const broadcast = live.redisUrl ? await redisBroadcast(live.redisUrl, live.redisPrefix, log) : localBroadcast(log);
  closers.push(() => broadcast.close());

  // One close however often it is asked for (a second signal, a test's cleanup after the app's own): a second
  // call waits for the first, rather than close the logger and the database under a job the first still stops.
  let closing: Promise<void> | undefined;
  const closeAll = async (): Promise<void> => {
    // A reversed copy: the list stays in registration order for anything that reads or appends to it meanwhile.
    for (const closer of [...closers].reverse()) {
      try {
        await closer();
      } catch (err) {
        log.error({ err }, 'error while closing');
      }
    }
  };

  return {
    config,
    db,
    blobs,
    cache,
    log,
    metrics: createMetrics(),
    clock,
    secrets: { jwtSecret, linkSecret },
    jobs,
    broadcast,
    tmpDir,
    onClose(closer) {
      closers.push(closer);
    },
    close() {
      closing ??= closeAll();
      return closing;
    },
  };
}
