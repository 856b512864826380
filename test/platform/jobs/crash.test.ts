// A runner process killed with SIGKILL mid-job: another process takes the job over and nothing is lost.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ENVS, dropRedisPrefix, makeRunner, newPrefix, TEST_REDIS_URL } from './harness.js';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'child-runner.ts');

/** Resolves with the first stdout line matching `pattern`. */
function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`child did not print ${pattern} in time; stderr: ${stderr}`)), timeoutMs);
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      buffered += d.toString();
      const line = buffered.split('\n').find((l) => pattern.test(l));
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before ${pattern}; stderr: ${stderr}`)));
  });
}

describe.each(ENVS)('crash recovery: $name', (env) => {
  it.skipIf(env.skip)(`a process killed mid-job: the next one completes it, and the queued ones${env.skip ? ` (skipped: ${env.skip})` : ''}`, async () => {
    const store = await env.openStore();
    const prefix = newPrefix();
    const parent = makeRunner(env.runnerKind, store.db, prefix, 2);
    parent.register('crashy', async () => ({ finishedBy: process.pid }));
    parent.register('quick', async () => ({ finishedBy: process.pid }));
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
      env: {
        ...process.env,
        CHILD_RUNNER: env.runnerKind,
        CHILD_DATABASE_URL: store.databaseUrl ?? '',
        CHILD_DATA_DIR: store.dataDir,
        CHILD_PREFIX: prefix,
        TEST_REDIS_URL: TEST_REDIS_URL ?? '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      await waitForLine(child, /^ready$/);
      const started = waitForLine(child, /^started /);
      const job = await parent.enqueue('crashy', {}, { userId: 'u1' });
      // The child runs one job at a time: these wait behind the one it dies in.
      const queued = [];
      for (let i = 0; i < 3; i++) queued.push(await parent.enqueue('quick', { i }, { userId: 'u1' }));
      expect(await started).toBe(`started ${job.job_id}`);
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;

      expect(await parent.get(job.job_id)).toMatchObject({ status: 'processing', attempts: 1, progress: 0.25 });
      await parent.start();
      const done = await parent.waitFor(job.job_id, 20_000);
      // Taken over after the lease ran out; a run cut short by a dead process is not a spent attempt.
      expect(done).toMatchObject({ status: 'completed', attempts: 1, result: { finishedBy: process.pid }, error: null });
      for (const q of queued) expect(await parent.waitFor(q.job_id, 20_000)).toMatchObject({ status: 'completed' });
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await parent.stop(1000);
      if (TEST_REDIS_URL) await dropRedisPrefix(TEST_REDIS_URL, prefix);
      await store.close();
    }
  });
});
