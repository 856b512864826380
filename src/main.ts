#!/usr/bin/env node
/**
 * The command line: `kiln serve` (the HTTP API), `kiln worker` (runs queued
 * jobs when REDIS_URL is set), `kiln migrate`, `kiln users create`,
 * `kiln blobs sweep`.
 */
import './threadpool.js';
import os from 'node:os';
import { buildApp, type App } from './app.js';
import { collectStartupGarbage } from './images/release.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createContext, type Context } from './context.js';
import { migrateToLatest } from './platform/db/index.js';
import { LocalJobRunner } from './platform/jobs/index.js';
import { UsageError } from './errors.js';
import { runBackupCommand } from './modules/backup.js';
import { runBlobsCommand } from './modules/blob-sweep.js';
import { runUsersCommand } from './modules/users/cli.js';

const USAGE = `usage: kiln <command>

  serve                 serve the HTTP API (default)
  worker                run background jobs from Redis (needs REDIS_URL)
  migrate               apply database migrations and exit
  users create --email E --username U [--password P] [--admin]
                        create a user (password from KILN_PASSWORD when not given)
  blobs sweep [--dry-run] [--older-than MINUTES] [--force]
                        remove blobs no row points at, written over MINUTES (default 60) ago
  backup DIR            copy the database, the blobs and the secrets into DIR (new or empty),
                        while the server runs; restore by copying DIR into an empty DATA_DIR
`;

function fail(message: string): never {
  process.stderr.write(`kiln: ${message}\n`);
  process.exit(1);
}

/**
 * Then, with every connection closed, route handlers still at work get this
 * long to end by themselves: an upload cut off mid-body removes its temp
 * file, one rendering commits (or rolls back) rather than leave blobs
 * without a row.
 */
const HANDLER_GRACE_MS = 30_000;

/**
 * SIGTERM and SIGINT start one shutdown. `npm start` forwards the signal its
 * process group was sent (one Ctrl-C, or a supervisor's SIGTERM to the
 * group), so node gets each one twice: the second is logged and changes
 * nothing. A third (a second Ctrl-C under npm) is someone who will not wait:
 * the process exits at once with 128 + the signal's number, leaving what a
 * kill leaves (a running job to its lease, temp files to the next start's sweep).
 */
function closeOnSignals(app: App, ctx: Context, role: string): void {
  const shutdown = async (signal: NodeJS.Signals) => {
    ctx.log.info({ signal, role }, 'shutting down');
    // At the signal, not once the connections have drained (seconds): a job claimed meanwhile would only be cut short.
    // BullMQ's worker (`kiln worker`, which has no connections to drain) stops taking jobs as ctx.close() begins.
    if (ctx.jobs instanceof LocalJobRunner) ctx.jobs.stopClaiming();
    // Requests in flight get SHUTDOWN_GRACE_SECONDS to finish; a client that stops reading must not hold the process.
    const force = setTimeout(() => app.server.closeAllConnections(), ctx.config.shutdownGraceSeconds * 1000);
    await app.close();
    clearTimeout(force);
    if (!(await app.inflight.settled(HANDLER_GRACE_MS))) ctx.log.warn({ handlers: app.inflight.size }, 'request handlers still running at exit');
    await ctx.close();
    process.exit(0);
  };
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) {
      void shutdown(signal);
    } else if (signals === 2) {
      ctx.log.info({ signal, role }, 'already shutting down; another signal exits at once');
    } else {
      ctx.log.warn({ signal, role, handlers: app.inflight.size }, 'forced exit: not waiting for the shutdown to finish');
      ctx.log.flush();
      process.exit(128 + os.constants.signals[signal]);
    }
  };
  // `on`, not `once`: with no listener left, a further signal would get Node's default action and kill the process.
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

async function serve(config: Config): Promise<void> {
  const ctx = await createContext(config);
  const app = await buildApp(ctx);
  closeOnSignals(app, ctx, 'serve');
  // Listening first: a start that cannot have its port (EADDRINUSE) must not have claimed jobs it then leaves behind.
  const address = await app.listen({ host: config.host, port: config.port }).catch((err: unknown) => fail(listenFailure(err, config)));
  // Modules registered their job kinds while the app was built; without REDIS_URL this process runs them.
  await ctx.jobs.start();
  collectStartupGarbage();
  ctx.log.info({ address }, 'kiln is serving');
}

/** Why the server could not listen, as one line naming the variable to change, like a bad setting's. */
function listenFailure(err: unknown, config: Config): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') return `PORT: ${config.host}:${config.port} is already in use (EADDRINUSE); stop what listens there or choose another PORT`;
  if (code === 'EACCES') return `PORT: no permission to listen on port ${config.port} (EACCES); ports below 1024 need privileges`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EADDRNOTAVAIL') return `HOST: cannot listen on "${config.host}" (${code}); use an address of this machine, such as 127.0.0.1 or 0.0.0.0`;
  return err instanceof Error ? err.message : String(err);
}

async function worker(config: Config): Promise<void> {
  if (!config.redisUrl) fail('worker needs REDIS_URL; without it `kiln serve` runs the jobs itself');
  const ctx = await createContext(config, { jobRole: 'worker' });
  // Building the app (never listening) is how every module registers its job kinds, exactly as in serve.
  const app = await buildApp(ctx);
  closeOnSignals(app, ctx, 'worker');
  await ctx.jobs.start();
  // It keeps trying either way; the log says which it is doing, not that it runs jobs while Redis is away.
  try {
    await ctx.jobs.healthCheck();
    ctx.log.info({ concurrency: config.jobConcurrency }, 'kiln worker is running jobs');
  } catch (err) {
    ctx.log.warn({ err, concurrency: config.jobConcurrency }, 'kiln worker started, but Redis does not answer: it runs jobs once Redis does');
  }
}

async function migrate(config: Config): Promise<void> {
  const ctx = await createContext(config, { migrate: false, logTo: 'stderr', oneShot: true });
  const applied = await migrateToLatest(ctx.db);
  process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
  await ctx.close();
}

async function users(config: Config, args: string[]): Promise<void> {
  try {
    const user = await runUsersCommand(config, args);
    process.stdout.write(`${JSON.stringify(user)}\n`);
  } catch (err) {
    if (err instanceof UsageError) fail(err.message);
    throw err;
  }
}

/** A UsageError's message is printed by main's own catch, like any other failure: one line (or two, with the usage) and exit 1. */
async function blobs(config: Config, args: string[]): Promise<void> {
  const report = await runBlobsCommand(config, args);
  for (const prefix of [...report.orphans, ...report.emptyDirectories]) process.stdout.write(`${report.dryRun ? 'would remove' : 'removed'} ${prefix}/\n`);
  process.stdout.write(
    `${JSON.stringify({ dry_run: report.dryRun, groups: report.groups, orphans: report.orphans.length, too_recent: report.tooRecent, empty_directories: report.emptyDirectories.length })}\n`,
  );
}

/** One JSON line of what was copied. */
async function backup(config: Config, args: string[]): Promise<void> {
  const report = await runBackupCommand(config, args);
  process.stdout.write(`${JSON.stringify({ dir: report.dir, database: report.database, secrets: report.secrets.length, blobs: report.blobs, bytes: report.bytes, vanished: report.vanished, skipped: report.skipped })}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [command = 'serve', ...rest] = argv;
  // Help is asked for before anything runs: `kiln migrate --help` must not migrate.
  if (command === 'help' || [command, ...rest].some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(USAGE);
    return;
  }
  // These three read everything from the environment; an option given to them would be silently ignored.
  if (['serve', 'worker', 'migrate'].includes(command) && rest.length > 0) {
    fail(`"${command}" takes no arguments (its settings come from the environment and .env: see README): got "${rest.join(' ')}"\n${USAGE}`);
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  switch (command) {
    case 'serve':
      return serve(config);
    case 'worker':
      return worker(config);
    case 'migrate':
      return migrate(config);
    case 'users':
      return users(config, rest);
    case 'blobs':
      return blobs(config, rest);
    case 'backup':
      return backup(config, rest);
    default:
      fail(`unknown command "${command}"\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  fail(err instanceof Error ? err.message : String(err));
});
