/**
 * Signals on `kiln serve` (the built server, as `npm start` runs it). npm
 * forwards the SIGINT or SIGTERM its process group was sent, so node gets
 * each one twice: a second signal is logged and changes nothing, and only a
 * third ends the process at once. One shutdown runs, and it stops the job
 * runner claiming at the signal rather than after the connections drained.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { systemClock } from '../src/clock.js';
import { createContext } from '../src/context.js';
import { openDatabase } from '../src/platform/db/index.js';
import { LocalJobRunner } from '../src/platform/jobs/index.js';
import { JobStore } from '../src/platform/jobs/store.js';
import { tempDataDir, testConfig } from './helpers/config.js';
import { stagedUploads, until, uploadStaging } from './helpers/files.js';
import { freePort, startKiln, type KilnProcess } from './helpers/process.js';
import { RawConnection } from './helpers/raw-http.js';
import { fixture } from './helpers/upload.js';
import { registerUser } from './helpers/users.js';
import { silentLog, sqliteStore } from './platform/jobs/harness.js';

const ROOT = path.join(import.meta.dirname, '..');
const temps: Array<{ cleanup: () => void }> = [];
afterAll(() => {
  for (const t of temps) t.cleanup();
});

/** Resolves once the process has logged `n` signals; rejects if it exits first. */
async function untilSignalsLogged(kiln: KilnProcess, n: number, timeoutMs = 5000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 10))) {
    if ((kiln.output().match(/"signal":/g) ?? []).length >= n) return;
    if (kiln.child.exitCode !== null || kiln.child.signalCode !== null) {
      throw new Error(`kiln exited (code ${kiln.child.exitCode}, signal ${kiln.child.signalCode}) before logging ${n} signals:\n${kiln.output()}`);
    }
    if (Date.now() > deadline) throw new Error(`kiln did not log ${n} signals:\n${kiln.output()}`);
  }
}

function exited(kiln: KilnProcess): Promise<void> {
  return kiln.child.exitCode !== null || kiln.child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => kiln.child.once('exit', () => resolve()));
}

/** The JSON lines of the output whose `msg` is `msg`. */
function linesSaying(output: string, msg: string): unknown[] {
  return output
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as { msg?: string })
    .filter((line) => line.msg === msg);
}

/** A multipart upload of one small JPEG, cut in two: the server stages the first part and waits for the rest. */
function upload(authorization: string, project: string): { head: string; first: Buffer; rest: Buffer } {
  const image = fixture('rocket_small_640x427.jpg');
  const body = Buffer.concat([
    Buffer.from('--kiln\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n', 'latin1'),
    image,
    Buffer.from('\r\n--kiln--\r\n', 'latin1'),
  ]);
  const head = `POST /projects/${project}/images HTTP/1.1\r\nhost: kiln.test\r\nauthorization: ${authorization}\r\ncontent-type: multipart/form-data; boundary=kiln\r\ncontent-length: ${body.length}\r\n\r\n`;
  return { head, first: body.subarray(0, 20_000), rest: body.subarray(20_000) };
}

/**
 * Starts a server, holds an upload in flight, sends `signals` (10 ms apart), queues a job while the
 * connection is still open, then lets the upload finish. Returns what a test checks.
 */
async function signalDuringUpload(signals: NodeJS.Signals[], opts: { finish: boolean }) {
  const data = tempDataDir();
  temps.push(data);
  const kiln = await startKiln({ DATA_DIR: data.dir, LOG_LEVEL: 'info' });
  const user = await registerUser(kiln.url, 'signaller');
  const conn = await RawConnection.open(kiln.url);
  const db = openDatabase(undefined, data.dir);
  try {
    const { head, first, rest } = upload(user.headers.authorization, 'signalled');
    conn.send(head);
    conn.send(first);
    await uploadStaging(data.dir);

    for (const [i, signal] of signals.entries()) {
      if (i > 0) await new Promise((r) => setTimeout(r, 10));
      kiln.child.kill(signal);
    }
    if (!opts.finish) {
      await exited(kiln);
      return { kiln, data, answer: undefined, job: undefined };
    }
    await untilSignalsLogged(kiln, signals.length);
    // A job queued after the signal (by another process on the same database) waits for the next start.
    const { row } = await new JobStore(db.kysely, db.dialect, systemClock).insert({ type: 'webhook', input: {}, userId: null, maxAttempts: 1 });
    // Four of the runner's idle polls (250 ms) while the upload still holds the server open.
    await new Promise((r) => setTimeout(r, 1000));
    expect(kiln.child.exitCode).toBe(null);
    conn.send(rest);
    const [answer] = await conn.answers(1, 20_000);
    // Answered: the client goes (a kept-alive connection idle would hold the exit for Node's 5 s keep-alive timeout).
    conn.destroy();
    await exited(kiln);
    const job = await db.kysely.selectFrom('jobs').selectAll().where('job_id', '=', row.job_id).executeTakeFirstOrThrow();
    return { kiln, data, answer, job };
  } finally {
    conn.destroy();
    await db.close();
    await kiln.stop('SIGKILL');
  }
}

describe('signals on kiln serve', () => {
  for (const signals of [
    ['SIGTERM', 'SIGTERM'],
    ['SIGINT', 'SIGINT'],
    ['SIGINT', 'SIGTERM'],
  ] as NodeJS.Signals[][]) {
    it(`${signals.join(' then ')} shuts down once and gracefully: the upload in flight is answered, the job queued after the signal stays queued`, async () => {
      const { kiln, data, answer, job } = await signalDuringUpload(signals, { finish: true });
      expect(kiln.child.signalCode).toBe(null);
      expect(kiln.child.exitCode).toBe(0);
      expect(answer?.status).toBe(201);
      const output = kiln.output();
      // Every line whole JSON (linesSaying parses them all), one shutdown, the second signal noted.
      expect(linesSaying(output, 'shutting down')).toEqual([expect.objectContaining({ signal: signals[0], role: 'serve' })]);
      expect(output).toContain(`"signal":"${signals[1]}"`);
      expect(output).toContain('already shutting down');
      // The upload's own request line was written before the logger closed.
      expect(output).toMatch(/"method":"POST".*"status":201|"status":201.*"method":"POST"/);
      expect(output).not.toContain('"level":50');
      expect(job).toMatchObject({ status: 'queued', attempts: 0, locked_by: null });
      expect(await stagedUploads(data.dir)).toEqual([]);
    }, 60_000);
  }

  it('gives requests in flight SHUTDOWN_GRACE_SECONDS: an upload whose body stalls is cut off after it, not after the default 10 s', async () => {
    const data = tempDataDir();
    temps.push(data);
    const kiln = await startKiln({ DATA_DIR: data.dir, LOG_LEVEL: 'info', SHUTDOWN_GRACE_SECONDS: '1' });
    const conn = await RawConnection.open(kiln.url);
    try {
      const user = await registerUser(kiln.url, 'stalled');
      const { head, first } = upload(user.headers.authorization, 'stalled');
      conn.send(head);
      conn.send(first);
      await uploadStaging(data.dir);
      const signalled = performance.now();
      kiln.child.kill('SIGTERM');
      await exited(kiln);
      // 1 s of grace, then the cut-off upload's cleanup and the close: well under the default's 10 s.
      expect(performance.now() - signalled).toBeLessThan(6000);
      expect(kiln.child.exitCode).toBe(0);
      expect(await stagedUploads(data.dir)).toEqual([]);
    } finally {
      conn.destroy();
      await kiln.stop('SIGKILL');
    }
  }, 30_000);

  it('a third signal ends the process at once, with 128 + the signal number', async () => {
    const started = Date.now();
    const { kiln } = await signalDuringUpload(['SIGTERM', 'SIGTERM', 'SIGTERM'], { finish: false });
    expect(kiln.child.signalCode).toBe(null);
    expect(kiln.child.exitCode).toBe(143);
    // Not the 10 s an upload that never finishes is given.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(linesSaying(kiln.output(), 'shutting down')).toHaveLength(1);
    expect(kiln.output()).toContain('forced exit');
  }, 60_000);
});

/** `npm start` in a process group of its own, as a terminal's foreground job is; Ctrl-C is SIGINT to the group. */
async function ctrlCOnNpmStart(dataDir: string): Promise<{ exit: { code: number | null; signal: string | null }; out: string; port: number }> {
  const port = await freePort();
  const npm = spawn('npm', ['start'], {
    cwd: ROOT,
    detached: true,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => npm.once('exit', (code, signal) => resolve({ code, signal })));
  const pid = npm.pid;
  if (pid === undefined) throw new Error('npm did not start');
  try {
    await expect.poll(() => out.includes('kiln is serving'), { timeout: 20_000 }).toBe(true);
    process.kill(-pid, 'SIGINT');
    return { exit: await exit, out, port };
  } finally {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // the group is gone
    }
  }
}

describe('npm start', () => {
  // Node gets the SIGINT from the terminal and again from npm, or once when the kernel merges the
  // second into the first still pending (about half the time here): three tries meet the second.
  it('Ctrl-C (SIGINT to the process group: node gets it from the terminal and from npm) shuts Kiln down once, gracefully', async () => {
    const data = tempDataDir();
    temps.push(data);
    for (let attempt = 0; attempt < 3; attempt++) {
      const { exit, out, port } = await ctrlCOnNpmStart(data.dir);
      expect(exit).toEqual({ code: 0, signal: null });
      const logged = out.split('\n').filter((line) => line.startsWith('{'));
      expect(logged.filter((line) => line.includes('"msg":"shutting down"'))).toHaveLength(1);
      expect(out).not.toContain('forced exit');
      await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
    }
  }, 90_000);
});

describe('ctx.close', () => {
  it('runs every closer once, last registered first, however often and however concurrently it is called', async () => {
    const data = tempDataDir();
    temps.push(data);
    const ctx = await createContext(testConfig(data.dir));
    const ran: string[] = [];
    for (const name of ['a', 'b', 'c']) {
      ctx.onClose(async () => {
        await new Promise((r) => setTimeout(r, 20));
        ran.push(name);
      });
    }
    await Promise.all([ctx.close(), ctx.close()]);
    await ctx.close();
    expect(ran).toEqual(['c', 'b', 'a']);
  });

  it('gives running jobs SHUTDOWN_GRACE_SECONDS to finish: one that needs longer is aborted then, and runs again later', async () => {
    const data = tempDataDir();
    temps.push(data);
    const ctx = await createContext(testConfig(data.dir, { SHUTDOWN_GRACE_SECONDS: '1' }));
    let started = false;
    let aborted = false;
    ctx.jobs.register('long', async (_input, job) => {
      started = true;
      // Three seconds of work, unless told to stop: within the default 10 s grace it would finish.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 3000);
        job.signal.addEventListener('abort', () => {
          aborted = true;
          clearTimeout(timer);
          resolve();
        });
      });
      return 'done';
    });
    await ctx.jobs.start();
    const { job_id } = await ctx.jobs.enqueue('long', {}, { userId: 'u1' });
    await until(async () => started, 5000, 'the job to start');
    const closing = performance.now();
    const db = openDatabase(undefined, data.dir);
    try {
      await ctx.close();
      expect(performance.now() - closing).toBeLessThan(2500);
      expect(aborted).toBe(true);
      // Given back, its attempt not spent: it runs at the next start.
      expect(await db.kysely.selectFrom('jobs').select(['status', 'attempts']).where('job_id', '=', job_id).executeTakeFirstOrThrow()).toEqual({ status: 'queued', attempts: 0 });
    } finally {
      await db.close();
    }
  });

  it('a second call closes nothing under the first: the database goes only after the jobs have stopped', async () => {
    const data = tempDataDir();
    temps.push(data);
    const ctx = await createContext(testConfig(data.dir));
    const events: string[] = [];
    ctx.onClose(() => void events.push('database closed'));
    ctx.onClose(async () => {
      events.push('jobs stopping');
      await new Promise((r) => setTimeout(r, 100));
      events.push('jobs stopped');
    });
    const first = ctx.close();
    await ctx.close();
    expect(events).toEqual(['jobs stopping', 'jobs stopped', 'database closed']);
    await first;
  });
});

describe('the local job runner at shutdown', () => {
  it('claims nothing once stopClaiming is called, and lets the job it runs finish', async () => {
    const store = await sqliteStore();
    const runner = new LocalJobRunner({ db: store.db, log: silentLog, clock: systemClock }, { concurrency: 2, pollMs: 20 });
    const ran: string[] = [];
    let release = (): void => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    runner.register<{ name: string }, null>('slow', async ({ name }) => {
      ran.push(name);
      if (name === 'first') await held;
      return null;
    });
    try {
      await runner.start();
      const first = await runner.enqueue('slow', { name: 'first' }, { userId: null });
      await until(async () => ran.includes('first'), 5000, 'the first job to start');
      runner.stopClaiming();
      const second = await runner.enqueue('slow', { name: 'second' }, { userId: null });
      await new Promise((r) => setTimeout(r, 300));
      expect(ran).toEqual(['first']);
      await expect(runner.healthCheck()).rejects.toThrow();
      release();
      await runner.stop();
      expect((await runner.get(first.job_id))?.status).toBe('completed');
      expect((await runner.get(second.job_id))?.status).toBe('queued');
      // A start after the shutdown began (a signal during startup) claims nothing either.
      await runner.start();
      await new Promise((r) => setTimeout(r, 200));
      expect((await runner.get(second.job_id))?.status).toBe('queued');
      await runner.stop();
    } finally {
      release();
      await runner.stop();
      await store.close();
    }
  });
});
