// Rules of the job system (docs/jobs.md) that the main suite does not pin down: the backoff cap, a timeout being
// transient, progress clamping while a job runs, the recovery limit, lease fencing and renewal, BullMQ's reconcile, and a BullMQ worker leaving a row whose lease is live.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/clock.js';
import { abortWhy, BullJobRunner, LocalJobRunner, PermanentJobError, TransientJobError, type AbortWhy } from '../../../src/platform/jobs/index.js';
import { RETRY_AFTER_MAX_MS, retryDelay } from '../../../src/platform/jobs/execute.js';
import { backoffDelay, HandlerRegistry } from '../../../src/platform/jobs/registry.js';
import { dropRedisPrefix, ENVS, newPrefix, silentLog, sqliteStore, TEST_REDIS_URL, whenAborted, type Store } from './harness.js';
import { until } from '../../helpers/until.js';
import { capturingLog } from '../../helpers/logs.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('backoffDelay', () => {
  it('doubles the delay per retry and caps it at maxDelayMs', () => {
    const backoff = { delayMs: 1000, maxDelayMs: 5000 };
    expect([1, 2, 3].map((attempt) => backoffDelay(backoff, attempt))).toEqual([1000, 2000, 4000]);
    expect(backoffDelay(backoff, 4)).toBe(5000);
    expect(backoffDelay(backoff, 10)).toBe(5000);
  });
});

describe('retryDelay', () => {
  it("waits the longer of the backoff and the service's Retry-After, that at most 15 minutes", () => {
    expect(retryDelay(2000, undefined)).toBe(2000);
    expect(retryDelay(2000, 500)).toBe(2000);
    expect(retryDelay(2000, 60_000)).toBe(60_000);
    expect(RETRY_AFTER_MAX_MS).toBe(15 * 60_000);
    expect(retryDelay(2000, 24 * 60 * 60_000)).toBe(RETRY_AFTER_MAX_MS);
  });
});

describe('a kind registered without options', () => {
  it('gets the documented defaults: 3 attempts, a 10 minute timeout, a 1 s backoff capped at 5 minutes, not cancellable, rows not kept', () => {
    const registry = new HandlerRegistry();
    registry.register('plain', async () => 'done');
    expect(registry.get('plain')).toMatchObject({
      maxAttempts: 3,
      timeoutMs: 10 * 60_000,
      backoff: { delayMs: 1000, maxDelayMs: 5 * 60_000 },
      cancellable: false,
      keepFinished: false,
    });
    expect(registry.kept()).toEqual([]);
    // A backoff given in part keeps the other half of the default.
    registry.register('quick', async () => 'done', { backoff: { delayMs: 10 } });
    expect(registry.get('quick')?.backoff).toEqual({ delayMs: 10, maxDelayMs: 5 * 60_000 });
  });
});

describe("the local runner's lease, as kiln serve makes it (no options)", () => {
  let store: Store | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });

  it('claims a job for 30 s and renews the lease every 5 s while the handler runs', async () => {
    store = await sqliteStore();
    const jobs = new LocalJobRunner({ db: store.db, log: silentLog, clock: systemClock }, { concurrency: 1 });
    let release = (): void => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    jobs.register('held', async () => held);
    await jobs.start();
    try {
      const { job_id } = await jobs.enqueue('held', {}, { userId: 'u1' });
      const claimed = await until(async () => {
        const row = await jobs.store.get(job_id);
        return row?.status === 'processing' ? row : undefined;
      });
      const claimedAt = Date.parse(claimed.started_at as string);
      const firstUntil = Date.parse(claimed.locked_until as string);
      expect(firstUntil - claimedAt).toBeGreaterThanOrEqual(29_900);
      expect(firstUntil - claimedAt).toBeLessThanOrEqual(30_100);

      // The first renewal comes a sixth of the lease after the claim, and extends it to 30 s from then.
      const renewed = await until(async () => {
        const row = await jobs.store.get(job_id);
        return row && Date.parse(row.locked_until as string) > firstUntil ? { at: Date.now(), until: Date.parse(row.locked_until as string) } : undefined;
      }, 15_000);
      expect(renewed.at - claimedAt).toBeGreaterThanOrEqual(4_500);
      expect(renewed.at - claimedAt).toBeLessThan(8_000);
      expect(renewed.until - renewed.at).toBeGreaterThan(25_000);
      expect(renewed.until - renewed.at).toBeLessThanOrEqual(30_100);
    } finally {
      release();
      await jobs.stop(2000);
    }
  }, 30_000);
});

const LOCAL_ENVS = ENVS.filter((e) => e.runnerKind === 'local');

describe.each(LOCAL_ENVS)('job rules: $name', (env) => {
  const title = env.skip ? `skipped: ${env.skip}` : 'runs';
  describe.skipIf(env.skip)(title, () => {
    let store: Store;
    const runners: Array<{ stop(graceMs?: number): Promise<void> }> = [];

    beforeAll(async () => {
      store = await env.openStore();
    });
    afterAll(async () => {
      await store?.close();
    });
    afterEach(async () => {
      for (const r of runners.splice(0)) await r.stop(500);
    });

    function runner(options: { leaseMs?: number; concurrency?: number } = {}): LocalJobRunner {
      const r = new LocalJobRunner({ db: store.db, log: silentLog, clock: systemClock }, { concurrency: options.concurrency ?? 2, leaseMs: options.leaseMs ?? 800, pollMs: 20 });
      runners.push(r);
      return r;
    }

    it('retries a job that overran its timeout (a transient `timeout`), and it completes on the next attempt', async () => {
      const jobs = runner();
      let calls = 0;
      jobs.register('slow-once', async (_input, job) => {
        calls++;
        if (calls === 1) {
          // Far past the timeout, ending early only when aborted.
          await Promise.race([sleep(3000), whenAborted(job.signal)]);
          return 'too late';
        }
        return 'in time';
      }, { timeoutMs: 150, maxAttempts: 2, backoff: { delayMs: 10 } });
      await jobs.start();
      const { job_id } = await jobs.enqueue('slow-once', {}, { userId: 'u1' });
      expect(await jobs.waitFor(job_id, 4000)).toMatchObject({ status: 'completed', attempts: 2, result: 'in time', error: null });
      expect(calls).toBe(2);
    });

    it("holds a retry back for the wait the failing service asked for (its Retry-After), beyond the backoff", async () => {
      const jobs = runner();
      jobs.register('rate-limited', async () => {
        throw new TransientJobError('source_unreachable', 'The product database answered 429.', 60_000);
      }, { maxAttempts: 3, backoff: { delayMs: 10 } });
      await jobs.start();
      const before = Date.now();
      const { job_id } = await jobs.enqueue('rate-limited', {}, { userId: 'u1' });
      const row = await until(async () => {
        const r = await store.db.kysely.selectFrom('jobs').select(['status', 'attempts', 'run_after']).where('job_id', '=', job_id).executeTakeFirst();
        return r?.status === 'queued' && r.attempts === 1 ? r : undefined;
      });
      // Queued with its first attempt spent, to run again a minute on, not after the 10 ms backoff.
      expect(Date.parse(row.run_after) - before).toBeGreaterThanOrEqual(59_000);
      expect(Date.parse(row.run_after) - Date.now()).toBeLessThanOrEqual(60_000);
      expect((await jobs.get(job_id))?.attempts).toBe(1);
    });

    it("logs a job that fails for good with its code and detail: a warning when the cause is the deployment's, else at info", async () => {
      const { log, lines } = capturingLog<{ level: number; msg: string; code?: string; detail?: string; jobId?: string }>('info');
      const jobs = new LocalJobRunner({ db: store.db, log, clock: systemClock }, { concurrency: 2, leaseMs: 800, pollMs: 20 });
      runners.push(jobs);
      jobs.register('rejected-key', async () => {
        throw new PermanentJobError('provider_rejected', 'The image provider rejected the request (401): Incorrect API key provided.', true);
      });
      jobs.register('not-found', async () => {
        throw new PermanentJobError('not_found', 'No product has this barcode.');
      });
      await jobs.start();
      const operators = await jobs.enqueue('rejected-key', {}, { userId: 'u1' });
      const owners = await jobs.enqueue('not-found', {}, { userId: 'u1' });
      for (const { job_id } of [operators, owners]) expect(await jobs.waitFor(job_id, 4000)).toMatchObject({ status: 'failed', attempts: 1 });
      const failed = (id: string) => lines.find((l) => l.msg === 'job failed' && l.jobId === id);
      expect(failed(operators.job_id)).toMatchObject({ level: 40, code: 'provider_rejected', detail: 'The image provider rejected the request (401): Incorrect API key provided.' });
      expect(failed(owners.job_id)).toMatchObject({ level: 30, code: 'not_found', detail: 'No product has this barcode.' });
    });

    it('clamps the progress a running handler reports to 0..1, as read while it still runs', async () => {
      const jobs = runner();
      // The row reads `processing` from its claim on, a moment before the handler runs: wait for the handler itself.
      let step!: (p: number) => void;
      let handlerRuns!: () => void;
      const running = new Promise<void>((r) => (handlerRuns = r));
      const reported: number[] = [];
      let finish!: () => void;
      const done = new Promise<void>((r) => (finish = r));
      jobs.register('overreporter', async (_input, job) => {
        step = (p) => void job.report(p).then(() => reported.push(p));
        handlerRuns();
        await Promise.race([done, whenAborted(job.signal)]);
        return 'ok';
      });
      await jobs.start();
      const { job_id } = await jobs.enqueue('overreporter', {}, { userId: 'clamp-user' });
      await running;
      expect(await jobs.get(job_id)).toMatchObject({ status: 'processing' });

      step(7);
      await until(() => reported.includes(7));
      expect(await jobs.get(job_id)).toMatchObject({ status: 'processing', progress: 1 });
      expect((await jobs.list({ userId: 'clamp-user' })).jobs[0]).toMatchObject({ job_id, status: 'processing', progress: 1 });

      step(-1);
      await until(() => reported.includes(-1));
      expect(await jobs.get(job_id)).toMatchObject({ status: 'processing', progress: 0 });
      finish();
      expect(await jobs.waitFor(job_id, 4000)).toMatchObject({ status: 'completed', progress: 1 });
    });

    it('keeps on a failed job what its last attempt reported (progress, and the extra in result): where it stopped', async () => {
      const jobs = runner();
      jobs.register('halfway', async (_input, job) => {
        await job.report(0.2, { stage: 'first', attempt: job.attempt });
        if (job.attempt === 1) throw new TransientJobError('flaky', 'Try again.');
        await job.report(0.4, { stage: 'download', attempt: job.attempt });
        throw new PermanentJobError('not_an_image', 'Not an image.');
      }, { backoff: { delayMs: 10 } });
      await jobs.start();
      const { job_id } = await jobs.enqueue('halfway', {}, { userId: 'u1' });
      expect(await jobs.waitFor(job_id, 4000)).toMatchObject({
        status: 'failed', attempts: 2, progress: 0.4, result: { stage: 'download', attempt: 2 }, error: { code: 'not_an_image' },
      });
    });

    it('fails a job taken over after 5 recoveries as `interrupted` without running its handler; the 5th recovery still runs', async () => {
      const jobs = runner();
      const ran: string[] = [];
      jobs.register('crashy', async (input: { name: string }) => {
        ran.push(input.name);
        return 'ran';
      });
      // Rows a dead runner left: processing, its lease long run out, taken over 5 (and 4) times already.
      const exhausted = (await jobs.store.insert({ type: 'crashy', input: { name: 'exhausted' }, userId: 'u1', maxAttempts: 3 })).row;
      const lastChance = (await jobs.store.insert({ type: 'crashy', input: { name: 'last-chance' }, userId: 'u1', maxAttempts: 3 })).row;
      for (const [row, recoveries] of [[exhausted, 5], [lastChance, 4]] as const) {
        await store.db.kysely
          .updateTable('jobs')
          .set({ status: 'processing', attempts: 1, recoveries, started_at: jobs.store.now(-60_000), locked_by: 'dead-runner', locked_until: jobs.store.now(-30_000) })
          .where('job_id', '=', row.job_id)
          .execute();
      }
      await jobs.start();
      expect(await jobs.waitFor(exhausted.job_id, 4000)).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'interrupted' } });
      expect(await jobs.waitFor(lastChance.job_id, 4000)).toMatchObject({ status: 'completed', attempts: 1, result: 'ran' });
      expect(ran).toEqual(['last-chance']);
    });

    it('does not write the outcome of a runner whose lease was taken over; the new holder\'s outcome stands', async () => {
      // A long lease: the first runner's heartbeat does not notice the takeover before its handler ends.
      const a = runner({ leaseMs: 30_000 });
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      a.register('contested', async (_input, job) => {
        await gate;
        await job.report(0.9, { by: 'a' });
        return { by: 'a' };
      });
      await a.start();
      const { job_id } = await a.enqueue('contested', {}, { userId: 'u1' });
      await until(async () => (await a.get(job_id))?.status === 'processing');
      // Runner B takes the row over (as a claim of an expired lease does).
      await store.db.kysely
        .updateTable('jobs')
        .set({ locked_by: 'runner-b', locked_until: a.store.now(30_000), recoveries: 1 })
        .where('job_id', '=', job_id)
        .execute();
      release();
      await a.stop(2000); // waits for A's attempt to end
      expect(await a.store.get(job_id)).toMatchObject({ status: 'processing', locked_by: 'runner-b', progress: 0, result: null });

      expect(await a.store.complete(job_id, 'runner-b', { by: 'b' })).toBe(true);
      expect(await a.get(job_id)).toMatchObject({ status: 'completed', result: { by: 'b' } });
    });

    it('renews the lease while a handler runs several lease lengths: a second runner never takes it over', async () => {
      // A heartbeat every 333 ms: a renewal may take over 600 ms on a loaded machine before the lease runs out.
      const leaseMs = 1000;
      const runs: string[] = [];
      const a = runner({ leaseMs });
      const b = runner({ leaseMs });
      a.register('marathon', async () => {
        runs.push('a');
        await sleep(3 * leaseMs);
        return 'a';
      });
      b.register('marathon', async () => {
        runs.push('b');
        await sleep(3 * leaseMs);
        return 'b';
      });
      await a.start();
      const { job_id } = await a.enqueue('marathon', {}, { userId: 'u1' });
      await until(async () => (await a.get(job_id))?.status === 'processing');
      await b.start(); // polls for expired leases every 20 ms
      expect(await a.waitFor(job_id, 10_000)).toMatchObject({ status: 'completed', attempts: 1, result: 'a' });
      expect(runs).toEqual(['a']);
      expect((await a.store.get(job_id))?.recoveries).toBe(0);
    });

    it('aborts the handler\'s signal within about a heartbeat once its lease is lost, and writes nothing', async () => {
      const leaseMs = 300; // heartbeat every 100 ms
      const jobs = runner({ leaseMs });
      let abortedAt = 0;
      let why: AbortWhy | null = null;
      jobs.register('robbed', async (_input, job) => {
        await whenAborted(job.signal);
        abortedAt = Date.now();
        why = abortWhy(job.signal);
        return 'never written';
      });
      await jobs.start();
      const { job_id } = await jobs.enqueue('robbed', {}, { userId: 'u1' });
      await until(async () => (await jobs.get(job_id))?.status === 'processing');
      // Someone else holds the row now, its lease far from over.
      await store.db.kysely
        .updateTable('jobs')
        .set({ locked_by: 'thief', locked_until: jobs.store.now(60_000) })
        .where('job_id', '=', job_id)
        .execute();
      const stolenAt = Date.now();
      await until(() => abortedAt > 0, 2000);
      expect(why).toBe('lost');
      expect(abortedAt - stolenAt).toBeLessThan(1000);
      await sleep(50);
      expect(await jobs.store.get(job_id)).toMatchObject({ status: 'processing', locked_by: 'thief', result: null });
    });
  });
});

describe.skipIf(!TEST_REDIS_URL)(`BullMQ workers and the row${TEST_REDIS_URL ? '' : ' (skipped: TEST_REDIS_URL is not set)'}`, () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** A worker over a SQLite store of its own and a Redis prefix of its own, with a 1 s lock; all undone after the test. */
  async function bullWorker(reconcileMs: number) {
    const store = await ENVS[0]!.openStore();
    cleanups.push(() => store.close());
    const prefix = newPrefix();
    cleanups.push(() => dropRedisPrefix(TEST_REDIS_URL as string, prefix));
    const worker = new BullJobRunner({ db: store.db, log: silentLog, clock: systemClock }, {
      redisUrl: TEST_REDIS_URL as string,
      role: 'worker',
      concurrency: 2,
      prefix,
      lockDurationMs: 1000,
      stalledIntervalMs: 500,
      reconcileMs,
    });
    cleanups.push(() => worker.stop(500));
    return { store, prefix, worker };
  }

  it('runs a queued row that never reached Redis once a worker reconciles', async () => {
    const { worker } = await bullWorker(200);
    let runs = 0;
    worker.register('orphaned', async () => ++runs);
    // The row only, as a serve process that died between the insert and the add leaves it.
    const { row } = await worker.store.insert({ type: 'orphaned', input: {}, userId: 'u1', maxAttempts: 3 });
    await worker.start();
    expect(await worker.waitFor(row.job_id, 4000)).toMatchObject({ status: 'completed', attempts: 1, result: 1 });
    expect(runs).toBe(1);
  });

  it('leaves a job Redis hands over to a run that still renews its lease elsewhere, and takes it over only once the lease runs out', async () => {
    const { store, prefix, worker } = await bullWorker(60_000);
    const ran: string[] = [];
    worker.register('contested', async (input: { name: string }) => {
      ran.push(input.name);
      return `ran ${input.name}`;
    });
    // Two rows another worker is running, its lease renewed 1.5 s ahead: as a worker cut off from Redis
    // (whose job BullMQ hands to someone else after its lock) leaves them.
    const rows = [];
    for (const name of ['finishes', 'dies']) {
      const { row } = await worker.store.insert({ type: 'contested', input: { name }, userId: 'u1', maxAttempts: 3 });
      await store.db.kysely
        .updateTable('jobs')
        .set({ status: 'processing', attempts: 1, started_at: worker.store.now(), locked_by: 'cut-off-worker', locked_until: worker.store.now(1500) })
        .where('job_id', '=', row.job_id)
        .execute();
      rows.push(row);
    }
    const [finishes, dies] = rows as [(typeof rows)[number], (typeof rows)[number]];
    // Redis hands both jobs to this worker (the add a serve process makes, by the row's id).
    const { Queue } = await import('bullmq');
    const queue = new Queue('jobs', { connection: { url: TEST_REDIS_URL as string }, prefix });
    cleanups.push(() => queue.close());
    await queue.addBulk(rows.map((row) => ({ name: row.type, data: { jobId: row.job_id }, opts: { jobId: row.job_id } })));
    await worker.start();
    await sleep(800);
    expect(ran).toEqual([]);
    // The other worker ends its run within its lease: that outcome stands, and nothing runs again.
    expect(await worker.store.complete(finishes.job_id, 'cut-off-worker', 'ran elsewhere')).toBe(true);
    // The other never comes back: once its lease has run out, this worker takes the job over, as a recovery.
    expect(await worker.waitFor(dies.job_id, 6000)).toMatchObject({ status: 'completed', attempts: 1, result: 'ran dies' });
    expect((await worker.store.get(dies.job_id))?.recoveries).toBe(1);
    expect(await worker.get(finishes.job_id)).toMatchObject({ status: 'completed', result: 'ran elsewhere' });
    expect(ran).toEqual(['dies']);
  });
});
