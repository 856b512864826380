// The one job suite, run against every runner and database (see harness.ts).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/clock.js';
import { createJobRunner, DeferJob, PermanentJobError, TransientJobError, type JobRunner } from '../../../src/platform/jobs/index.js';
import { testConfig } from '../../helpers/config.js';
import { dropRedisPrefix, ENVS, makeRunner, newPrefix, silentLog, sqliteStore, TEST_REDIS_URL, whenAborted, type Store } from './harness.js';
import { until } from '../../helpers/until.js';

const JOB_KEYS = [
  'attempts', 'created_at', 'error', 'finished_at', 'input', 'job_id', 'max_attempts',
  'progress', 'result', 'started_at', 'status', 'type', 'user_id',
];

/**
 * Runs `total` jobs that each wait at a gate of their own and opens the gates
 * one at a time. Before each opening, after the runner had time to start more
 * (several poll intervals), exactly min(limit, jobs left) are running.
 */
async function expectBoundedRuns(jobs: JobRunner, limit: number, total: number, settleMs: number): Promise<void> {
  let running = 0;
  let most = 0;
  const gates = new Map<string, () => void>();
  jobs.register('gated', async (input: { i: number }, job) => {
    running += 1;
    most = Math.max(most, running);
    await new Promise<void>((open) => gates.set(job.jobId, open));
    running -= 1;
    return input.i;
  });
  await jobs.start();
  const ids: string[] = [];
  for (let i = 0; i < total; i++) ids.push((await jobs.enqueue('gated', { i }, { userId: 'u1' })).job_id);
  for (let left = total; left > 0; left--) {
    const expected = Math.min(limit, left);
    await until(async () => gates.size >= expected);
    await new Promise((r) => setTimeout(r, settleMs));
    expect([running, gates.size]).toEqual([expected, expected]);
    if (left === total) {
      const statuses = await Promise.all(ids.map(async (id) => (await jobs.get(id))?.status));
      expect(statuses.filter((st) => st === 'processing')).toHaveLength(limit);
      expect(statuses.filter((st) => st === 'queued')).toHaveLength(total - limit);
    }
    const [id, open] = gates.entries().next().value as [string, () => void];
    gates.delete(id);
    open();
  }
  for (const [i, id] of ids.entries()) expect(await jobs.waitFor(id, 10_000)).toMatchObject({ status: 'completed', result: i });
  expect(most).toBe(limit);
}

describe('JOB_CONCURRENCY bounds the local runner kiln serve makes', () => {
  let store: Store;
  let jobs: JobRunner | undefined;
  beforeAll(async () => {
    store = await sqliteStore();
  });
  afterAll(async () => {
    await jobs?.stop(1000);
    await store?.close();
  });

  it.each([2, 3])('JOB_CONCURRENCY=%i: at most that many of 6 jobs run at once, and all 6 complete', async (limit) => {
    await jobs?.stop(1000);
    // As context.ts makes it: from the configuration read from the environment.
    const config = testConfig(store.dataDir, { JOB_CONCURRENCY: String(limit) });
    jobs = createJobRunner(config, { db: store.db, log: silentLog, clock: systemClock });
    expect(jobs.mode).toBe('local');
    // Longer than the runner's idle poll (250 ms), so a runner that would start more has had its chance.
    await expectBoundedRuns(jobs, limit, 6, 400);
  });
});

describe.each(ENVS)('jobs: $name', (env) => {
  const title = env.skip ? `skipped: ${env.skip}` : 'runs';
  describe.skipIf(env.skip)(title, () => {
    let store: Store;
    const runners: JobRunner[] = [];
    const prefixes: string[] = [];

    beforeAll(async () => {
      store = await env.openStore();
    });
    afterAll(async () => {
      await store?.close();
    });
    afterEach(async () => {
      for (const r of runners.splice(0)) await r.stop(1000);
      if (TEST_REDIS_URL) for (const p of prefixes.splice(0)) await dropRedisPrefix(TEST_REDIS_URL, p);
    });

    /** A runner over the suite's database; with BullMQ, on `prefix` (a fresh one unless given). */
    function runner(prefix = newPrefix(), concurrency = 2): JobRunner {
      prefixes.push(prefix);
      const r = makeRunner(env.runnerKind, store.db, prefix, concurrency);
      runners.push(r);
      return r;
    }

    it('runs a job to completion with its result, in the API shape', async () => {
      const jobs = runner();
      jobs.register('echo', async (input: { n: number }, job) => ({ doubled: input.n * 2, attempt: job.attempt }));
      await jobs.start();
      const queued = await jobs.enqueue('echo', { n: 21 }, { userId: 'u1' });
      expect(Object.keys(queued).sort()).toEqual(JOB_KEYS);
      expect(queued).toMatchObject({ type: 'echo', status: 'queued', progress: 0, attempts: 0, max_attempts: 3, input: { n: 21 }, result: null, error: null, user_id: 'u1', started_at: null, finished_at: null });
      expect(queued.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      const done = await jobs.waitFor(queued.job_id, 10_000);
      expect(Object.keys(done).sort()).toEqual(JOB_KEYS);
      expect(done).toMatchObject({ status: 'completed', progress: 1, attempts: 1, result: { doubled: 42, attempt: 1 }, error: null });
      expect(done.started_at).not.toBeNull();
      expect(done.finished_at! >= done.started_at!).toBe(true);
      expect(await jobs.get(queued.job_id)).toEqual(done);
      expect(await jobs.get('no-such-job')).toBeNull();
    });

    it('enqueueWithin: the job exists exactly when the caller\'s transaction commits, and runs once dispatched', async () => {
      const jobs = runner();
      const ran: string[] = [];
      jobs.register('announce', async (input: { what: string }) => {
        ran.push(input.what);
        return input.what;
      });
      await jobs.start();
      // A transaction that fails after writing the job leaves no job behind.
      const failing = store.db.kysely.transaction().execute(async (tx) => {
        await jobs.enqueueWithin(tx, 'announce', { what: 'rolled back' }, { userId: 'u1' });
        throw new Error('the caller\'s change failed');
      });
      await expect(failing).rejects.toThrow('the caller\'s change failed');
      expect(await store.db.kysely.selectFrom('jobs').select('job_id').where('type', '=', 'announce').execute()).toEqual([]);

      const { job, dispatch } = await store.db.kysely.transaction().execute((tx) => jobs.enqueueWithin(tx, 'announce', { what: 'committed' }, { userId: 'u1' }));
      expect(job).toMatchObject({ type: 'announce', status: 'queued', input: { what: 'committed' }, user_id: 'u1' });
      await dispatch();
      expect(await jobs.waitFor(job.job_id, 10_000)).toMatchObject({ status: 'completed', result: 'committed' });
      expect(ran).toEqual(['committed']);
    });

    it('reports progress while the job runs', async () => {
      const jobs = runner();
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      jobs.register('staged', async (_input, job) => {
        await job.report(0.5, { stage: 'downloading' });
        await gate;
        await job.report(7); // clamped to 1
        return { ok: true };
      });
      await jobs.start();
      const { job_id } = await jobs.enqueue('staged', {}, { userId: null });
      const midway = await until(async () => {
        const j = await jobs.get(job_id);
        return j?.progress === 0.5 ? j : undefined;
      });
      expect(midway).toMatchObject({ status: 'processing', result: { stage: 'downloading' } });
      release();
      expect(await jobs.waitFor(job_id, 10_000)).toMatchObject({ status: 'completed', progress: 1, result: { ok: true } });
    });

    it('retries transient errors with exponential backoff, then succeeds', async () => {
      const jobs = runner();
      const calls: number[] = [];
      jobs.register(
        'flaky',
        async (_input, job) => {
          calls.push(Date.now());
          await job.report(0.4, { stage: `step of run ${calls.length}` });
          if (calls.length < 3) throw new TransientJobError('source_unreachable', 'The source did not answer.');
          return 'third time lucky';
        },
        // 500 ms: the queued row between two attempts lasts long enough for a poll on a loaded machine to see it.
        { maxAttempts: 3, backoff: { delayMs: 500 } },
      );
      await jobs.start();
      const { job_id } = await jobs.enqueue('flaky', {}, { userId: 'u1' });
      // While waiting for the retry, the row is queued again and shows the last error.
      const between = await until(async () => {
        const j = await jobs.get(job_id);
        return j?.attempts === 1 && j.status === 'queued' ? j : undefined;
      });
      expect(between.error).toEqual({ code: 'source_unreachable', detail: 'The source did not answer.' });
      // The next attempt starts over: what the failed one reported on its way is gone with its progress.
      expect(between).toMatchObject({ progress: 0, result: null });
      const done = await jobs.waitFor(job_id, 10_000);
      expect(done).toMatchObject({ status: 'completed', attempts: 3, result: 'third time lucky', error: null });
      expect(calls).toHaveLength(3);
      // Backoff: 500 ms before the second run, 1 s before the third (lower bounds only).
      expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(495);
      expect(calls[2]! - calls[1]!).toBeGreaterThanOrEqual(995);
    });

    it('gives a deferring job back to the queue, its attempt not spent and its slot free for another job', async () => {
      const jobs = runner(undefined, 1);
      let runs = 0;
      const finished: string[] = [];
      // More runs than max_attempts (and than BullMQ's own attempt budget), none of them counted.
      jobs.register('waiter', async () => {
        runs++;
        if (runs < 12) throw new DeferJob(20);
        finished.push('waiter');
        return runs;
      }, { maxAttempts: 2 });
      jobs.register('other', async () => {
        finished.push('other');
        return 'ran';
      });
      await jobs.start();
      const waiter = await jobs.enqueue('waiter', {}, { userId: 'u1' });
      const between = await until(async () => {
        const j = await jobs.get(waiter.job_id);
        return runs >= 2 && j?.status === 'queued' ? j : undefined;
      });
      expect(between).toMatchObject({ attempts: 0, error: null });
      // One slot, and the waiter is not in it while it waits.
      const other = await jobs.enqueue('other', {}, { userId: 'u1' });
      expect(await jobs.waitFor(other.job_id, 10_000)).toMatchObject({ status: 'completed', result: 'ran' });
      expect(await jobs.waitFor(waiter.job_id, 10_000)).toMatchObject({ status: 'completed', attempts: 1, result: 12, error: null });
      expect(finished).toEqual(['other', 'waiter']);
    });

    it('keeps what a deferring job reported (progress, and the extra in result) while it waits', async () => {
      const jobs = runner();
      jobs.register('patient', async (_input, job) => {
        await job.report(0.5, { stage: 'waiting for the barcode' });
        throw new DeferJob(60_000);
      });
      await jobs.start();
      const { job_id } = await jobs.enqueue('patient', {}, { userId: 'u1' });
      const waiting = await until(async () => {
        const j = await jobs.get(job_id);
        return j?.status === 'queued' && j.started_at !== null ? j : undefined;
      });
      expect(waiting).toMatchObject({ status: 'queued', attempts: 0, progress: 0.5, result: { stage: 'waiting for the barcode' }, error: null });
    });

    it('fails with the last transient error once max_attempts are spent', async () => {
      const jobs = runner();
      let calls = 0;
      jobs.register('down', async () => {
        calls++;
        throw new TransientJobError('source_unreachable', 'Still down.');
      }, { backoff: { delayMs: 10 } });
      await jobs.start();
      const { job_id } = await jobs.enqueue('down', {}, { userId: 'u1', maxAttempts: 2 });
      const done = await jobs.waitFor(job_id, 10_000);
      expect(done).toMatchObject({ status: 'failed', attempts: 2, max_attempts: 2, error: { code: 'source_unreachable', detail: 'Still down.' } });
      expect(calls).toBe(2);
    });

    it('fails at once on a permanent error', async () => {
      const jobs = runner();
      let calls = 0;
      jobs.register('missing', async () => {
        calls++;
        throw new PermanentJobError('not_found', 'The product database has no such product.');
      });
      await jobs.start();
      const { job_id } = await jobs.enqueue('missing', {}, { userId: 'u1' });
      const done = await jobs.waitFor(job_id, 10_000);
      expect(done).toMatchObject({ status: 'failed', attempts: 1, max_attempts: 3, error: { code: 'not_found', detail: 'The product database has no such product.' } });
      expect(done.finished_at).not.toBeNull();
      expect(calls).toBe(1);
    });

    it('fails a buggy handler at once with a hidden detail and keeps running others', async () => {
      const jobs = runner();
      jobs.register('buggy', async () => {
        throw new TypeError("Cannot read properties of undefined (reading 'secret') at /srv/kiln/src/x.ts:12");
      });
      jobs.register('fine', async () => 'ok');
      await jobs.start();
      const bug = await jobs.enqueue('buggy', {}, { userId: 'u1' });
      const done = await jobs.waitFor(bug.job_id, 10_000);
      expect(done).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'internal_error', detail: 'The job failed unexpectedly.' } });
      expect(JSON.stringify(done)).not.toContain('secret');
      const next = await jobs.enqueue('fine', {}, { userId: 'u1' });
      expect(await jobs.waitFor(next.job_id, 10_000)).toMatchObject({ status: 'completed', result: 'ok' });
    });

    it('times out a job, aborting its signal, even when the handler ignores it', async () => {
      const jobs = runner();
      let sawAbort = false;
      jobs.register('slowpoke', async (_input, job) => {
        void whenAborted(job.signal).then(() => (sawAbort = true));
        await new Promise((r) => setTimeout(r, 5000));
        return 'too late';
      }, { timeoutMs: 150, maxAttempts: 1 });
      jobs.register('after', async () => 'ok');
      await jobs.start();
      const { job_id } = await jobs.enqueue('slowpoke', {}, { userId: 'u1' });
      const done = await jobs.waitFor(job_id, 10_000);
      expect(done).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'timeout' } });
      expect(sawAbort).toBe(true);
      const next = await jobs.enqueue('after', {}, { userId: 'u1' });
      expect(await jobs.waitFor(next.job_id, 10_000)).toMatchObject({ status: 'completed' });
    });

    it('lists newest first with an opaque cursor, scoped by user, status and type', async () => {
      const jobs = runner();
      jobs.register('listed', async () => 'ok');
      jobs.register('listed-other', async () => 'ok');
      const mine: string[] = [];
      for (let i = 0; i < 5; i++) mine.push((await jobs.enqueue('listed', { i }, { userId: 'lister' })).job_id);
      const other = await jobs.enqueue('listed-other', {}, { userId: 'someone-else' });
      const page1 = await jobs.list({ userId: 'lister', limit: 2 });
      expect(page1.jobs.map((j) => j.job_id)).toEqual([mine[4], mine[3]]);
      expect(page1.next_cursor).toEqual(expect.any(String));
      const page2 = await jobs.list({ userId: 'lister', limit: 2, cursor: page1.next_cursor! });
      expect(page2.jobs.map((j) => j.job_id)).toEqual([mine[2], mine[1]]);
      const page3 = await jobs.list({ userId: 'lister', limit: 2, cursor: page2.next_cursor! });
      expect(page3.jobs.map((j) => j.job_id)).toEqual([mine[0]]);
      expect(page3.next_cursor).toBeNull();
      const all = await jobs.list({ all: true, type: 'listed-other' });
      expect(all.jobs.map((j) => j.job_id)).toEqual([other.job_id]);
      expect((await jobs.list({ userId: 'lister', status: 'completed' })).jobs).toEqual([]);
      const bad = { status: 422, code: 'invalid_cursor', extra: { errors: [{ field: 'querystring.cursor', message: expect.any(String) }] } };
      await expect(jobs.list({ userId: 'lister', cursor: 'not-a-cursor' })).rejects.toMatchObject(bad);
      // Valid base64url JSON of the wrong shape is no better than garbage.
      await expect(jobs.list({ userId: 'lister', cursor: Buffer.from('["only-one"]').toString('base64url') })).rejects.toMatchObject(bad);
    });

    it('lists 20 jobs when no limit is given, and up to the limit asked for', async () => {
      const jobs = runner();
      jobs.register('paged', async () => 'ok');
      // Not started: the jobs stay queued, newest first in the list.
      const ids: string[] = [];
      for (let i = 0; i < 21; i++) ids.push((await jobs.enqueue('paged', { i }, { userId: 'pager' })).job_id);
      const first = await jobs.list({ userId: 'pager' });
      expect(first.jobs.map((j) => j.job_id)).toEqual(ids.slice(1).reverse());
      expect(first.next_cursor).toEqual(expect.any(String));
      const rest = await jobs.list({ userId: 'pager', cursor: first.next_cursor! });
      expect(rest.jobs.map((j) => j.job_id)).toEqual([ids[0]]);
      expect(rest.next_cursor).toBeNull();
      expect((await jobs.list({ userId: 'pager', limit: 100 })).jobs).toHaveLength(21);
    });

    it('returns the job in flight for the same dedupe key, and a new one after it finished', async () => {
      const jobs = runner();
      jobs.register('deduped', async () => 'ok');
      const a = await jobs.enqueue('deduped', { n: 1 }, { userId: 'u1', dedupeKey: 'ean:4006381333931:u1' });
      const b = await jobs.enqueue('deduped', { n: 2 }, { userId: 'u1', dedupeKey: 'ean:4006381333931:u1' });
      expect(b.job_id).toBe(a.job_id);
      expect(b.input).toEqual({ n: 1 });
      await jobs.start();
      await jobs.waitFor(a.job_id, 10_000);
      const c = await jobs.enqueue('deduped', { n: 3 }, { userId: 'u1', dedupeKey: 'ean:4006381333931:u1' });
      expect(c.job_id).not.toBe(a.job_id);
    });

    it('cancels queued and running jobs of a cancellable kind only', async () => {
      const jobs = runner();
      let aborted = false;
      jobs.register('long', async (_input, job) => {
        await whenAborted(job.signal);
        aborted = true;
        return 'stopped';
      }, { cancellable: true });
      jobs.register('stubborn', async () => 'ok');
      const queued = await jobs.enqueue('long', {}, { userId: 'u1' });
      expect(await jobs.cancel(queued.job_id)).toMatchObject({ status: 'cancelled' });
      const keep = await jobs.enqueue('stubborn', {}, { userId: 'u1' });
      expect(await jobs.cancel(keep.job_id)).toMatchObject({ status: 'queued' });
      expect(await jobs.cancel('no-such-job')).toBeNull();
      await jobs.start();
      const running = await jobs.enqueue('long', {}, { userId: 'u1' });
      await until(async () => (await jobs.get(running.job_id))?.status === 'processing');
      expect(await jobs.cancel(running.job_id)).toMatchObject({ status: 'cancelled' });
      await until(async () => aborted);
      expect(await jobs.get(running.job_id)).toMatchObject({ status: 'cancelled', result: null });
      expect(await jobs.waitFor(keep.job_id, 10_000)).toMatchObject({ status: 'completed' });
      expect(await jobs.get(queued.job_id)).toMatchObject({ status: 'cancelled', attempts: 0 });
    });

    it('stops only once a job aborted by the stop has cleaned up after itself, and gives the job back', async () => {
      const prefix = newPrefix();
      const jobs = runner(prefix);
      let cleanedUp = false;
      jobs.register('tidy', async (_input, job) => {
        await job.report(0.5, { stage: 'mapping' });
        await whenAborted(job.signal);
        // Clean-up that takes a while after the abort, as killing a child and removing its workspace does.
        await new Promise((r) => setTimeout(r, 300));
        cleanedUp = true;
        return 'never';
      });
      await jobs.start();
      const job = await jobs.enqueue('tidy', {}, { userId: 'u1' });
      await until(async () => (await jobs.get(job.job_id))?.progress === 0.5);
      await jobs.stop(50);
      expect(cleanedUp).toBe(true);
      // Queued again as if never started: no progress, nothing reported (a pipeline's stage would say "mapping" while queued).
      expect(await jobs.get(job.job_id)).toMatchObject({ status: 'queued', attempts: 0, progress: 0, result: null });
    });

    it('loses nothing across a restart: jobs enqueued before are run by the next process', async () => {
      const prefix = newPrefix();
      const before = runner(prefix);
      before.register('persisted', async (input: { i: number }) => input.i);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await before.enqueue('persisted', { i }, { userId: 'u1' })).job_id);
      await before.stop();
      const after = runner(prefix);
      after.register('persisted', async (input: { i: number }) => input.i);
      await after.start();
      for (const [i, id] of ids.entries()) expect(await after.waitFor(id, 10_000)).toMatchObject({ status: 'completed', result: i });
    });

    it('never runs one job twice when two runners share the queue', async () => {
      const prefix = newPrefix();
      const runs = new Map<string, number>();
      const a = runner(prefix, 4);
      const b = runner(prefix, 4);
      for (const r of [a, b]) {
        r.register('shared', async (_input, job) => {
          runs.set(job.jobId, (runs.get(job.jobId) ?? 0) + 1);
          await new Promise((done) => setTimeout(done, 5));
          return 'ok';
        });
      }
      await a.start();
      await b.start();
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) ids.push((await (i % 2 ? a : b).enqueue('shared', { i }, { userId: 'u1' })).job_id);
      for (const id of ids) expect(await a.waitFor(id, 20_000)).toMatchObject({ status: 'completed', attempts: 1 });
      expect([...runs.values()].every((n) => n === 1)).toBe(true);
      expect(runs.size).toBe(40);
    });

    it('runs at most `concurrency` jobs at a time, and all of them', async () => {
      await expectBoundedRuns(runner(newPrefix(), 2), 2, 6, 150);
    });

    it('stops gracefully: a running job finishes, queued ones wait for the next start', async () => {
      const prefix = newPrefix();
      const jobs = runner(prefix, 1);
      jobs.register('brief', async () => {
        await new Promise((r) => setTimeout(r, 200));
        return 'done';
      });
      await jobs.start();
      const first = await jobs.enqueue('brief', {}, { userId: 'u1' });
      await until(async () => (await jobs.get(first.job_id))?.status === 'processing');
      await jobs.stop(5000);
      expect(await jobs.get(first.job_id)).toMatchObject({ status: 'completed', result: 'done' });
    });

    it('prunes the jobs finished before a time, never a kept kind\'s or a live one, and deletes a user\'s finished jobs', async () => {
      const jobs = runner();
      let release = (): void => undefined;
      const held = new Promise<void>((resolve) => (release = resolve));
      jobs.register('prunable', async () => 'ok');
      jobs.register('refused', async () => {
        throw new PermanentJobError('no', 'refused');
      });
      jobs.register('kept', async () => 'model', { keepFinished: true });
      jobs.register('held', async () => held);
      await jobs.start();
      const finished = async (kind: string, userId = 'u-prune') => jobs.waitFor((await jobs.enqueue(kind, {}, { userId })).job_id, 10_000);
      const old = [await finished('prunable'), await finished('refused'), await finished('prunable', 'u-gone')];
      const kept = await finished('kept');
      const live = await jobs.enqueue('held', {}, { userId: 'u-prune' });
      await until(async () => (await jobs.get(live.job_id))?.status === 'processing');
      await new Promise((r) => setTimeout(r, 5));
      const before = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 5));
      const recent = await finished('prunable');
      const gone = await finished('prunable', 'u-gone');

      expect(await jobs.pruneFinished(before)).toBeGreaterThanOrEqual(old.length);
      for (const job of old) expect(await jobs.get(job.job_id)).toBeNull();
      expect(await jobs.get(kept.job_id)).toMatchObject({ status: 'completed' });
      expect(await jobs.get(recent.job_id)).toMatchObject({ status: 'completed' });
      expect(await jobs.get(live.job_id)).toMatchObject({ status: 'processing' });
      expect(await jobs.pruneFinished(before)).toBe(0);

      const goneLive = await jobs.enqueue('held', {}, { userId: 'u-gone' });
      expect(await jobs.deleteFinishedOf('u-gone')).toBe(1);
      expect(await jobs.get(gone.job_id)).toBeNull();
      expect(await jobs.get(goneLive.job_id)).not.toBeNull();
      expect(await jobs.get(recent.job_id)).not.toBeNull();
      release();
      await jobs.waitFor(goneLive.job_id, 10_000);
    });
  });
});
