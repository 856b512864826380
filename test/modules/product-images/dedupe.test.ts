import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, hasPostgres } from '../../helpers/pg.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import type { TestServer } from '../../helpers/server.js';
import { startFakeProvider, type FakeProvider } from './fake-provider.js';
import { ean13, requestFetch, startProductServer, waitForJob } from './server.js';

const DATABASES = [
  { name: 'SQLite', skip: false as const },
  { name: 'PostgreSQL', skip: hasPostgres ? (false as const) : 'TEST_DATABASE_URL is not set' },
];

for (const database of DATABASES) {
  describe.skipIf(database.skip !== false)(`a barcode is fetched from the provider once (${database.name})`, () => {
    let provider: FakeProvider;
    let server: TestServer;
    let second: TestServer;
    let users: TestUser[];
    let dropDb: (() => Promise<void>) | undefined;
    let next = 500;

    beforeAll(async () => {
      provider = await startFakeProvider();
      let env = {};
      if (database.name === 'PostgreSQL') {
        const pg = await createTestDatabase();
        dropDb = pg.drop;
        env = { DATABASE_URL: pg.url };
      }
      server = await startProductServer(provider.url, env);
      // A second Kiln on the same database and blobs, running jobs too: the lease must hold across processes.
      second = await startProductServer(provider.url, env, undefined, server.dataDir);
      users = await Promise.all(['alice', 'bob', 'carol', 'dave'].map((n) => registerUser(server.url, n)));
    });
    afterAll(async () => {
      await second?.close();
      await server?.close();
      await dropDb?.();
      await provider?.close();
    });

    it('the same user asking again while in flight gets the same job', async () => {
      const [alice] = users as [TestUser];
      const code = ean13(next++);
      provider.products.set(code, { kind: 'slow', delayMs: 600, name: 'Slow', image: '/img/rocket.jpg' });
      const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => requestFetch(i % 2 ? second.url : server.url, alice.headers, { ean_code: code })));
      expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202, 202]);
      const ids = new Set(answers.map((a) => a.body.job_id));
      expect(ids.size).toBe(1);
      const job = await waitForJob(server.url, alice.headers, answers[0]?.body.job_id as string);
      expect(job.status).toBe('completed');
      expect(provider.productHits(code)).toBe(1);
    });

    it('a new job answers queued; asking again once it runs (the job shows processing) answers the same job, as queued: the spec\'s answer', async () => {
      const [, bob] = users as [TestUser, TestUser];
      const code = ean13(next++);
      provider.products.set(code, { kind: 'slow', delayMs: 800, name: 'Slow', image: '/img/rocket.jpg' });
      const first = await requestFetch(server.url, bob.headers, { ean_code: code });
      expect(first).toMatchObject({ status: 202, body: { status: 'queued', ean_code: code } });
      const jobId = first.body.job_id as string;
      for (let i = 0; ; i++) {
        const job = (await (await fetch(`${server.url}/api/v1/jobs/${jobId}`, { headers: bob.headers })).json()) as { status: string };
        if (job.status === 'processing') break;
        expect(i, 'the job never started').toBeLessThan(400);
        await new Promise((r) => setTimeout(r, 10));
      }
      const again = await requestFetch(second.url, bob.headers, { ean_code: code });
      expect(again).toEqual({ status: 202, body: { job_id: jobId, status: 'queued', ean_code: code } });
      expect((await waitForJob(server.url, bob.headers, jobId)).status).toBe('completed');
    });

    it('different users asking at once get jobs of their own, and the provider is asked once', async () => {
      const code = ean13(next++);
      provider.products.set(code, { kind: 'slow', delayMs: 600, name: 'Shared', image: '/img/rocket.jpg' });
      const answers = await Promise.all(users.map((u, i) => requestFetch(i % 2 ? second.url : server.url, u.headers, { ean_code: code })));
      expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202]);
      expect(new Set(answers.map((a) => a.body.job_id)).size).toBe(users.length);
      const jobs = await Promise.all(users.map((u, i) => waitForJob(server.url, u.headers, answers[i]?.body.job_id as string)));
      expect(jobs.map((j) => j.status)).toEqual(['completed', 'completed', 'completed', 'completed']);
      expect(jobs.map((j) => j.user_id)).toEqual(users.map((u) => u.id));
      expect(jobs.filter((j) => j.result?.fetched_from_provider).length).toBe(1);
      expect(provider.productHits(code)).toBe(1);
      expect(provider.hits.get('/img/rocket.jpg')).toBeGreaterThan(0);
    });

    it('anyone asking after it was fetched gets a new job that completes from the store', async () => {
      const [alice, bob] = users as [TestUser, TestUser];
      const code = ean13(next++);
      provider.products.set(code, { kind: 'ok', name: 'Once', image: '/img/rocket.jpg' });
      const first = await requestFetch(server.url, alice.headers, { ean_code: code });
      expect((await waitForJob(server.url, alice.headers, first.body.job_id as string)).status).toBe('completed');
      const downloads = provider.hits.get('/img/rocket.jpg');

      for (const user of [bob, alice]) {
        const again = await requestFetch(server.url, user.headers, { ean_code: code });
        expect(again.status).toBe(202);
        expect(again.body.job_id).not.toBe(first.body.job_id);
        const job = await waitForJob(server.url, user.headers, again.body.job_id as string);
        expect(job).toMatchObject({ status: 'completed', attempts: 1, user_id: user.id, result: { ean_code: code, product_name: 'Once', fetched_from_provider: false } });
      }
      expect(provider.productHits(code)).toBe(1);
      expect(provider.hits.get('/img/rocket.jpg')).toBe(downloads);
    });

    /** Three users ask for `code` at once, across both servers; their jobs once finished. */
    async function threeAskAtOnce(code: string) {
      const askers = users.slice(0, 3);
      const answers = await Promise.all(askers.map((u, i) => requestFetch(i % 2 ? second.url : server.url, u.headers, { ean_code: code })));
      return Promise.all(askers.map((u, i) => waitForJob(server.url, u.headers, answers[i]?.body.job_id as string)));
    }

    it('a holder that meets a 503 keeps the barcode through its retries: the provider is asked by one job only', async () => {
      const code = ean13(next++);
      // Each provider answer takes 300 ms, so every job is waiting before the first 503.
      provider.products.set(code, { kind: 'flaky', failures: 2, delayMs: 300, name: 'Busy', image: '/img/rocket.jpg' });
      const jobs = await threeAskAtOnce(code);
      expect(jobs.map((j) => j.status)).toEqual(['completed', 'completed', 'completed']);
      expect(jobs.filter((j) => j.result?.fetched_from_provider).map((j) => j.attempts)).toEqual([3]);
      expect(provider.productHits(code)).toBe(3);
    });

    it('when the holder\'s last attempt fails too, the jobs waiting on it end with its error without asking', async () => {
      const code = ean13(next++);
      provider.products.set(code, { kind: 'flaky', failures: 99, delayMs: 300, name: 'Down', image: '/img/rocket.jpg' });
      const jobs = await threeAskAtOnce(code);
      for (const job of jobs) expect(job).toMatchObject({ status: 'failed', error: { code: 'source_unreachable' } });
      expect(jobs.map((j) => j.attempts).sort()).toEqual([1, 1, 3]);
      expect(provider.productHits(code)).toBe(3);
    });

    it('jobs waiting on a fetch that failed for good end with its error, without asking again', async () => {
      const code = ean13(next++);
      provider.products.set(code, { kind: 'slow_missing', delayMs: 600 });
      const answers = await Promise.all(users.slice(0, 3).map((u, i) => requestFetch(i % 2 ? second.url : server.url, u.headers, { ean_code: code })));
      const jobs = await Promise.all(users.slice(0, 3).map((u, i) => waitForJob(server.url, u.headers, answers[i]?.body.job_id as string)));
      for (const job of jobs) expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'not_found' } });
      expect(provider.productHits(code)).toBe(1);

      // A failure is not remembered for later requests: the product may have been added since.
      const later = await requestFetch(server.url, (users[3] as TestUser).headers, { ean_code: code });
      expect((await waitForJob(server.url, (users[3] as TestUser).headers, later.body.job_id as string)).error?.code).toBe('not_found');
      expect(provider.productHits(code)).toBe(2);
    });
  });
}

/**
 * One process with few runner slots: jobs waiting on a barcode's holder wait
 * in the queue, not in a slot, and jobs asked for while the holder ran share
 * its failure even when they had not started yet.
 */
describe('jobs waiting on a barcode hold no runner slot (SQLite, one process)', () => {
  let provider: FakeProvider;
  const servers: TestServer[] = [];
  let next = 900;

  beforeAll(async () => {
    provider = await startFakeProvider();
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    await provider?.close();
  });

  async function askAtOnce(concurrency: number, code: string) {
    const server = await startProductServer(provider.url, { JOB_CONCURRENCY: String(concurrency) });
    servers.push(server);
    const askers = await Promise.all(['erin', 'frank', 'grace'].map((n) => registerUser(server.url, n)));
    const answers = await Promise.all(askers.map((u) => requestFetch(server.url, u.headers, { ean_code: code })));
    // Well inside the barcode's lease (over a minute): a holder whose retry waits for a free slot would not finish in time.
    return Promise.all(askers.map((u, i) => waitForJob(server.url, u.headers, answers[i]?.body.job_id as string, 15_000)));
  }

  it("the holder's retry finds a slot while two jobs wait on it (JOB_CONCURRENCY=2)", async () => {
    const code = ean13(next++);
    provider.products.set(code, { kind: 'flaky', failures: 1, delayMs: 300, name: 'Busy', image: '/img/rocket.jpg' });
    const jobs = await askAtOnce(2, code);
    expect(jobs.map((j) => j.status)).toEqual(['completed', 'completed', 'completed']);
    expect(jobs.filter((j) => j.result?.fetched_from_provider).map((j) => j.attempts)).toEqual([2]);
    // The waiters spent no attempt of their own while they waited.
    expect(jobs.filter((j) => !j.result?.fetched_from_provider).map((j) => j.attempts)).toEqual([1, 1]);
    expect(provider.productHits(code)).toBe(2);
  });

  it('jobs asked for while the holder ran end with its failure, even those that had not started (JOB_CONCURRENCY=1)', async () => {
    const code = ean13(next++);
    provider.products.set(code, { kind: 'slow_missing', delayMs: 300 });
    const jobs = await askAtOnce(1, code);
    for (const job of jobs) expect(job).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'not_found' } });
    expect(provider.productHits(code)).toBe(1);
  });
});
