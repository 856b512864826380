import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { createContext } from '../src/context.js';
import { registerProductImageJobs } from '../src/modules/product-images/fetch-job.js';
import { tempDataDir, testConfig } from './helpers/config.js';
import { createTestDatabase, hasPostgres } from './helpers/pg.js';
import { MAIN, startKiln } from './helpers/process.js';
import { closedPort, dropRedisPrefix, newPrefix } from './helpers/redis.js';

const run = promisify(execFile);
const data = tempDataDir();
afterAll(() => data.cleanup());

async function migrate(env: Record<string, string>): Promise<string> {
  const { stdout } = await run(process.execPath, [MAIN, 'migrate'], { env: { ...process.env, LOG_LEVEL: 'silent', ...env } });
  return stdout.trim();
}

describe('kiln migrate', () => {
  it('applies every migration to a new SQLite database, then has nothing to do', async () => {
    const first = await migrate({ DATA_DIR: data.dir });
    expect(first).toMatch(/^applied: 0001_core, /);
    expect(first).toContain('0003_jobs');
    expect(await migrate({ DATA_DIR: data.dir })).toBe('database is up to date');
  });

  it.skipIf(!hasPostgres)('does the same on PostgreSQL', async () => {
    const db = await createTestDatabase();
    try {
      expect(await migrate({ DATA_DIR: data.dir, DATABASE_URL: db.url })).toMatch(/^applied: 0001_core, /);
      expect(await migrate({ DATA_DIR: data.dir, DATABASE_URL: db.url })).toBe('database is up to date');
    } finally {
      await db.drop();
    }
  });

  it('exits by itself when REDIS_URL names a Redis that cannot be reached (before: its cache client kept reconnecting, and the process never ended)', async () => {
    const fresh = tempDataDir();
    const port = await closedPort();
    try {
      // execFile's timeout kills a process that does not end: the run then fails.
      const { stdout } = await run(process.execPath, [MAIN, 'migrate'], { timeout: 15_000, env: { ...process.env, LOG_LEVEL: 'silent', DATA_DIR: fresh.dir, REDIS_URL: `redis://127.0.0.1:${port}` } });
      expect(stdout).toMatch(/^applied: 0001_core, /);
    } finally {
      fresh.cleanup();
    }
  });

  it('prints its usage for help', async () => {
    const { stdout } = await run(process.execPath, [MAIN, 'help']);
    expect(stdout).toContain('usage: kiln <command>');
    expect(stdout).toContain('migrate');
    expect(stdout).toContain('blobs sweep [--dry-run] [--older-than MINUTES] [--force]');
  });
});

describe('one-shot commands with REDIS_URL set', () => {
  it('open no Redis connection at all: migrate, users create and blobs sweep need only the database and the blobs', async () => {
    // A port that takes connections and never answers, counting them: what a Redis that hangs looks like.
    const sockets = new Set<net.Socket>();
    let connections = 0;
    const hanging = net.createServer((socket) => {
      connections++;
      sockets.add(socket);
    });
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const fresh = tempDataDir();
    try {
      const env = { ...process.env, LOG_LEVEL: 'info', DATA_DIR: fresh.dir, REDIS_URL: `redis://127.0.0.1:${(hanging.address() as net.AddressInfo).port}`, KILN_PASSWORD: 'one-shot-password-1' };
      for (const args of [['migrate'], ['users', 'create', '--email', 'once@example.com', '--username', 'once'], ['blobs', 'sweep', '--dry-run']]) {
        const { stderr } = await run(process.execPath, [MAIN, ...args], { timeout: 30_000, env });
        expect(stderr, args.join(' ')).not.toMatch(/redis/i);
      }
      expect(connections).toBe(0);
    } finally {
      for (const socket of sockets) socket.destroy();
      hanging.close();
      fresh.cleanup();
    }
  }, 90_000);
});

describe('arguments', () => {
  it('prints the usage for --help after any command, and runs nothing: `migrate --help` makes no database', async () => {
    const fresh = tempDataDir();
    try {
      for (const command of ['migrate', 'serve', 'worker', 'users']) {
        const { stdout } = await run(process.execPath, [MAIN, command, '--help'], { env: { ...process.env, DATA_DIR: fresh.dir } });
        expect(stdout, command).toContain('usage: kiln <command>');
      }
      expect(existsSync(path.join(fresh.dir, 'kiln.db'))).toBe(false);
    } finally {
      fresh.cleanup();
    }
  });

  it('refuses an option serve, worker or migrate would ignore, naming it', async () => {
    for (const command of ['serve', 'worker', 'migrate']) {
      const failed = await run(process.execPath, [MAIN, command, '--port', '9999'], { env: { ...process.env, DATA_DIR: data.dir } }).then(
        () => null,
        (err: { code: number; stderr: string }) => err,
      );
      expect(failed?.code, command).toBe(1);
      expect(failed?.stderr.split('\n')[0]).toBe(`kiln: "${command}" takes no arguments (its settings come from the environment and .env: see README): got "--port 9999"`);
    }
  });

  it('reads UV_THREADPOOL_SIZE from .env too, the environment first, and defaults to the cores and two more, at least 4', async () => {
    const dir = tempDataDir();
    try {
      writeFileSync(path.join(dir.dir, '.env'), 'UV_THREADPOOL_SIZE=13\n');
      const threadpool = path.join(path.dirname(MAIN), 'threadpool.js');
      const size = async (env: Record<string, string>) =>
        (await run(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(threadpool)}); console.log(process.env.UV_THREADPOOL_SIZE)`], { cwd: dir.dir, env: { ...process.env, UV_THREADPOOL_SIZE: '', ...env } })).stdout.trim();
      expect(await size({})).toBe('13');
      expect(await size({ UV_THREADPOOL_SIZE: '7' })).toBe('7');
      // Set neither way: the cores and two more, at least 4 (the README's default).
      rmSync(path.join(dir.dir, '.env'));
      expect(await size({})).toBe(String(Math.max(4, os.availableParallelism() + 2)));
    } finally {
      dir.cleanup();
    }
  });
});

describe('kiln worker', () => {
  it('says it waits for Redis, not that it runs jobs, when REDIS_URL cannot be reached', async () => {
    const dir = tempDataDir();
    const port = await closedPort();
    const worker = await startKiln({ DATA_DIR: dir.dir, REDIS_URL: `redis://127.0.0.1:${port}`, LOG_LEVEL: 'info' }, 'worker');
    try {
      await expect.poll(() => worker.output(), { timeout: 15_000 }).toContain('kiln worker started, but Redis does not answer');
      expect(worker.output()).not.toContain('kiln worker is running jobs');
    } finally {
      await worker.stop();
      dir.cleanup();
    }
  });

  it.skipIf(!process.env.TEST_REDIS_URL)('says it runs jobs when Redis answers', async () => {
    const dir = tempDataDir();
    const prefix = newPrefix();
    const worker = await startKiln({ DATA_DIR: dir.dir, REDIS_URL: process.env.TEST_REDIS_URL as string, REDIS_PREFIX: prefix, LOG_LEVEL: 'info' }, 'worker');
    try {
      await expect.poll(() => worker.output(), { timeout: 15_000 }).toContain('kiln worker is running jobs');
    } finally {
      await worker.stop();
      await dropRedisPrefix(process.env.TEST_REDIS_URL as string, prefix);
      dir.cleanup();
    }
  });
});

describe('kiln serve that cannot have its port', () => {
  it('exits 1 naming the failure, and leaves the queued jobs of its database queued for the server that runs', async () => {
    const dir = tempDataDir();
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    try {
      const ctx = await createContext(testConfig(dir.dir));
      registerProductImageJobs(ctx);
      const job = await ctx.jobs.enqueue('ean_fetch', { ean_code: '4006381333931' }, { userId: null });
      await ctx.close();

      const port = (busy.address() as net.AddressInfo).port;
      const failed = await run(process.execPath, [MAIN, 'serve'], { env: { ...process.env, LOG_LEVEL: 'silent', DATA_DIR: dir.dir, HOST: '127.0.0.1', PORT: String(port) } }).then(
        () => null,
        (err: { code: number; stderr: string }) => err,
      );
      expect(failed?.code).toBe(1);
      expect(failed?.stderr).toBe(`kiln: PORT: 127.0.0.1:${port} is already in use (EADDRINUSE); stop what listens there or choose another PORT\n`);

      const after = await createContext(testConfig(dir.dir));
      try {
        expect(await after.jobs.get(job.job_id)).toMatchObject({ status: 'queued', attempts: 0, started_at: null });
      } finally {
        await after.close();
      }
    } finally {
      await new Promise<void>((resolve) => busy.close(() => resolve()));
      dir.cleanup();
    }
  });
});

describe('kiln serve on a host it cannot have', () => {
  it('stops with one line naming HOST', async () => {
    const dir = tempDataDir();
    try {
      const failed = await run(process.execPath, [MAIN, 'serve'], { env: { ...process.env, LOG_LEVEL: 'silent', DATA_DIR: dir.dir, HOST: 'no-such-host.invalid', PORT: '0' } }).then(
        () => null,
        (err: { code: number; stderr: string }) => err,
      );
      expect(failed?.code).toBe(1);
      expect(failed?.stderr).toMatch(/^kiln: HOST: cannot listen on "no-such-host\.invalid" \((ENOTFOUND|EAI_AGAIN)\); use an address of this machine, such as 127\.0\.0\.1 or 0\.0\.0\.0\n$/);
    } finally {
      dir.cleanup();
    }
  });
});

describe('kiln blobs sweep', () => {
  const kiln = (args: string[]) => run(process.execPath, [MAIN, ...args], { env: { ...process.env, LOG_LEVEL: 'silent', DATA_DIR: data.dir } });

  it('names an old orphan on a dry run, then removes it', async () => {
    await migrate({ DATA_DIR: data.dir });
    const dir = path.join(data.dir, 'blobs', 'gallery', 'nobodys-image');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'thumb.jpg');
    writeFileSync(file, 'left by a crash');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    utimesSync(file, twoHoursAgo, twoHoursAgo);

    // An upload that died between making its directory and writing into it, and one's staged temp file.
    const bare = path.join(data.dir, 'blobs', 'orders', 'nobodys-order', 'nobodys-file');
    mkdirSync(bare, { recursive: true });
    for (const d of [bare, path.dirname(bare)]) utimesSync(d, twoHoursAgo, twoHoursAgo);
    const staged = path.join(data.dir, 'tmp', 'upload-0123456789abcdef0123456789abcdef');
    writeFileSync(staged, 'half an upload');
    utimesSync(staged, twoHoursAgo, twoHoursAgo);

    // The store holds nothing but this orphan, so the database knows none of its images: the guard
    // refuses such a sweep (test/modules/blob-sweep-guard.test.ts), and --force is what runs it.
    const dry = await kiln(['blobs', 'sweep', '--dry-run', '--force']);
    expect(dry.stdout).toContain('would remove gallery/nobodys-image/\n');
    expect(dry.stdout).toContain('would remove orders/nobodys-order/nobodys-file/\n');
    expect(JSON.parse(dry.stdout.trim().split('\n').pop() as string)).toEqual({ dry_run: true, groups: 1, orphans: 1, too_recent: 0, empty_directories: 2 });
    // A dry run removes nothing: neither the orphan, nor the empty directories, nor the temp file.
    expect(existsSync(file)).toBe(true);
    expect(existsSync(bare)).toBe(true);
    expect(existsSync(staged)).toBe(true);

    // Three hours is longer ago than it was written: left alone.
    expect(JSON.parse((await kiln(['blobs', 'sweep', '--older-than', '180'])).stdout.trim())).toMatchObject({ orphans: 0, too_recent: 1 });
    expect(existsSync(file)).toBe(true);

    const done = await kiln(['blobs', 'sweep', '--force']);
    expect(done.stdout).toContain('removed gallery/nobodys-image/\n');
    expect(done.stdout).toContain('removed orders/nobodys-order/\n');
    expect(existsSync(file)).toBe(false);
    expect(existsSync(path.dirname(bare))).toBe(false);
    expect(existsSync(path.join(data.dir, 'blobs', 'orders'))).toBe(true);
    expect(existsSync(staged)).toBe(false);
  });

  it('takes orphans older than 60 minutes by default, and --older-than down to 10', async () => {
    const own = tempDataDir();
    try {
      await migrate({ DATA_DIR: own.dir });
      const orphan = (name: string, minutesAgo: number) => {
        const dir = path.join(own.dir, 'blobs', 'gallery', name);
        mkdirSync(dir, { recursive: true });
        const when = new Date(Date.now() - minutesAgo * 60_000);
        utimesSync(dir, when, when);
        writeFileSync(path.join(dir, 'thumb.jpg'), 'left by a crash');
        utimesSync(path.join(dir, 'thumb.jpg'), when, when);
      };
      orphan('seventy-five-minutes-old', 75);
      orphan('forty-five-minutes-old', 45);
      const sweep = async (args: string[]) => {
        const { stdout } = await run(process.execPath, [MAIN, 'blobs', 'sweep', '--dry-run', '--force', ...args], { env: { ...process.env, LOG_LEVEL: 'silent', DATA_DIR: own.dir } });
        return { lines: stdout.trim().split('\n'), summary: JSON.parse(stdout.trim().split('\n').pop() as string) as Record<string, unknown> };
      };
      const byDefault = await sweep([]);
      expect(byDefault.summary).toMatchObject({ groups: 2, orphans: 1, too_recent: 1 });
      expect(byDefault.lines).toContain('would remove gallery/seventy-five-minutes-old/');
      expect((await sweep(['--older-than', '10'])).summary).toMatchObject({ groups: 2, orphans: 2, too_recent: 0 });
      const nine = (await sweep(['--older-than', '9']).catch((e: unknown) => e)) as { code: number; stderr: string };
      expect(nine.code).toBe(1);
      expect(nine.stderr).toMatch(/--older-than: expected whole minutes, at least 10, got "9"/);
    } finally {
      own.cleanup();
    }
  });

  it('writes only its result to standard output; its log goes to standard error', async () => {
    const env = { ...process.env, LOG_LEVEL: 'info', DATA_DIR: data.dir };
    const { stdout, stderr } = await run(process.execPath, [MAIN, 'blobs', 'sweep'], { env });
    expect(stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(stdout)).toMatchObject({ dry_run: false, orphans: 0 });
    expect(stderr).toContain('"msg":"orphan blob sweep"');
    const migrated = await run(process.execPath, [MAIN, 'migrate'], { env });
    expect(migrated.stdout).toBe('database is up to date\n');
  });

  it.each([
    [['blobs'], /usage: kiln blobs sweep/],
    [['blobs', 'sweep', '--older-than', '5'], /--older-than: expected whole minutes, at least 10, got "5"/],
    [['blobs', 'sweep', '--older-than', '0x10'], /--older-than: expected whole minutes, at least 10, got "0x10"/],
    [['blobs', 'sweep', '--older-than', '1e3'], /--older-than: expected whole minutes, at least 10, got "1e3"/],
    [['blobs', 'sweep', '--now'], /Unknown option '--now'/],
  ])('refuses %j with a message and exit code 1', async (args, message) => {
    const err = (await kiln(args).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(message);
  });
});
