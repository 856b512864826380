/**
 * The sweeps every serving process runs on a timer (docs/operations.md,
 * "What grows, and what removes it"), each run here by hand on a server
 * whose clock a test moves: job rows past JOB_RETENTION_DAYS, barcode
 * leases that ran out, and a deleted account's finished jobs.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jobRetention } from '../../src/modules/jobs.js';
import { PHOTOGRAMMETRY } from '../../src/modules/pipeline/service.js';
import { EAN_FETCH, LEASE_KEEP_MS, ProductImageService } from '../../src/modules/product-images/service.js';
import { TestClock } from '../auth/helpers.js';
import { capturingLog } from '../helpers/logs.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { registerUser } from '../helpers/users.js';

const DAY_MS = 24 * 60 * 60_000;

/** A job row as a runner leaves it: finished `finishedDaysAgo` days ago, or still queued when null. */
async function jobRow(server: TestServer, clock: TestClock, type: string, finishedDaysAgo: number | null, userId = 'u-housekeeping', finished: 'completed' | 'failed' | 'cancelled' = 'completed'): Promise<string> {
  const at = (daysAgo: number) => new Date(clock.now().getTime() - daysAgo * DAY_MS).toISOString();
  const jobId = `job-${type}-${finishedDaysAgo}-${Math.random().toString(36).slice(2)}`;
  const created = at((finishedDaysAgo ?? 0) + 1);
  await server.ctx.db.kysely
    .insertInto('jobs')
    .values({
      job_id: jobId,
      type,
      status: finishedDaysAgo === null ? 'queued' : finished,
      progress: finishedDaysAgo === null ? 0 : 1,
      attempts: finishedDaysAgo === null ? 0 : 1,
      max_attempts: 1,
      input: '{}',
      result: null,
      error: null,
      user_id: userId,
      dedupe_key: null,
      created_at: created,
      started_at: finishedDaysAgo === null ? null : created,
      finished_at: finishedDaysAgo === null ? null : at(finishedDaysAgo),
      // Far ahead: no runner of the test server picks the queued row up.
      run_after: at(-365),
      locked_by: null,
      locked_until: null,
      recoveries: 0,
    })
    .execute();
  return jobId;
}

const exists = async (server: TestServer, jobId: string): Promise<boolean> =>
  (await server.ctx.db.kysely.selectFrom('jobs').select('job_id').where('job_id', '=', jobId).executeTakeFirst()) !== undefined;

describe('job retention', () => {
  const servers: TestServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });

  it('deletes jobs finished more than JOB_RETENTION_DAYS ago, never a photogrammetry job (it owns its model) nor a live one', async () => {
    const clock = new TestClock();
    const server = await startServer({ JOB_RETENTION_DAYS: '30' }, { clock });
    servers.push(server);
    const old = await jobRow(server, clock, EAN_FETCH, 31);
    const recent = await jobRow(server, clock, EAN_FETCH, 29);
    const model = await jobRow(server, clock, PHOTOGRAMMETRY, 400);
    const queued = await jobRow(server, clock, EAN_FETCH, null);

    expect(await jobRetention(server.ctx).run()).toBe(1);
    expect([await exists(server, old), await exists(server, recent), await exists(server, model), await exists(server, queued)]).toEqual([false, true, true, true]);

    clock.advanceMinutes(2 * 24 * 60);
    expect(await jobRetention(server.ctx).run()).toBe(1);
    expect(await exists(server, recent)).toBe(false);
  });

  it('logs one info line with the count when a run deletes something, and none when it deletes nothing', async () => {
    const clock = new TestClock();
    const server = await startServer({ JOB_RETENTION_DAYS: '30' }, { clock });
    servers.push(server);
    await jobRow(server, clock, EAN_FETCH, 40);
    await jobRow(server, clock, EAN_FETCH, 35, 'u-housekeeping', 'failed');
    const { log, lines } = capturingLog();
    const sweep = jobRetention({ ...server.ctx, log });
    expect(await sweep.run()).toBe(2);
    expect(await sweep.run()).toBe(0);
    expect(lines.filter((l) => l.msg === 'pruned finished jobs')).toEqual([expect.objectContaining({ level: 30, jobs: 2, retentionDays: 30 })]);
  });

  it('goes through a backlog larger than one statement\'s 500 rows in a single run', async () => {
    const clock = new TestClock();
    const server = await startServer({ JOB_RETENTION_DAYS: '30' }, { clock });
    servers.push(server);
    const finishedAt = new Date(clock.now().getTime() - 400 * DAY_MS).toISOString();
    const backlog = 1201;
    for (let from = 0; from < backlog; from += 100) {
      const rows = Array.from({ length: Math.min(100, backlog - from) }, (_, i) => ({
        job_id: `job-backlog-${from + i}`,
        type: EAN_FETCH,
        status: 'completed',
        progress: 1,
        attempts: 1,
        max_attempts: 1,
        input: '{}',
        result: null,
        error: null,
        user_id: 'u-backlog',
        dedupe_key: null,
        created_at: finishedAt,
        started_at: finishedAt,
        finished_at: finishedAt,
        run_after: finishedAt,
        locked_by: null,
        locked_until: null,
        recoveries: 0,
      }));
      await server.ctx.db.kysely.insertInto('jobs').values(rows).execute();
    }
    const recent = await jobRow(server, clock, EAN_FETCH, 1);

    expect(await jobRetention(server.ctx).run()).toBe(backlog);
    const left = await server.ctx.db.kysely.selectFrom('jobs').select('job_id').execute();
    expect(left.map((r) => r.job_id)).toEqual([recent]);
  });

  it('keeps every job with JOB_RETENTION_DAYS=0', async () => {
    const clock = new TestClock();
    const server = await startServer({ JOB_RETENTION_DAYS: '0' }, { clock });
    servers.push(server);
    const ancient = await jobRow(server, clock, EAN_FETCH, 3650);
    expect(await jobRetention(server.ctx).run()).toBe(0);
    expect(await exists(server, ancient)).toBe(true);
  });

  it('defaults to 30 days', async () => {
    const clock = new TestClock();
    const server = await startServer({}, { clock });
    servers.push(server);
    expect(server.ctx.config.jobRetentionDays).toBe(30);
  });
});

describe('housekeeping of one server', () => {
  let server: TestServer;
  const clock = new TestClock();
  beforeAll(async () => {
    server = await startServer({}, { clock });
  });
  afterAll(async () => server.close());

  it('deletes barcode leases an hour after they ran out, failed or abandoned, and no live one', async () => {
    const at = (minutesAgo: number) => new Date(clock.now().getTime() - minutesAgo * 60_000).toISOString();
    const lease = (ean: string, ranOutMinutesAgo: number, error: string | null) =>
      server.ctx.db.kysely.insertInto('product_image_fetches').values({ ean_code: ean, job_id: `job-${ean}`, locked_until: at(ranOutMinutesAgo), error, updated_at: at(ranOutMinutesAgo) }).execute();
    expect(LEASE_KEEP_MS).toBe(60 * 60_000);
    await lease('4006381333931', 120, 'product_not_found');
    await lease('5901234123457', 180, null);
    await lease('9780201379624', 10, 'provider_unavailable');
    await lease('4000417025005', -5, null);

    const { log, lines } = capturingLog();
    const products = new ProductImageService({ ...server.ctx, log });
    expect(await products.pruneDeadLeases()).toBe(2);
    const left = await server.ctx.db.kysely.selectFrom('product_image_fetches').select('ean_code').orderBy('ean_code').execute();
    expect(left.map((r) => r.ean_code)).toEqual(['4000417025005', '9780201379624']);
    // One info line with the count for the run that deleted something; none for one that did not.
    expect(await products.pruneDeadLeases()).toBe(0);
    expect(lines.filter((l) => l.msg === 'pruned barcode leases that ran out')).toEqual([expect.objectContaining({ level: 30, leases: 2 })]);
  });

  it('deletes the finished jobs of a deleted account, and nobody else\'s', async () => {
    const leaving = await registerUser(server.url, 'leaving');
    const staying = await registerUser(server.url, 'staying');
    const finished = await jobRow(server, clock, EAN_FETCH, 0, leaving.id);
    const model = await jobRow(server, clock, PHOTOGRAMMETRY, 0, leaving.id);
    const others = await jobRow(server, clock, EAN_FETCH, 0, staying.id);

    const res = await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: leaving.headers });
    expect(res.status).toBe(204);
    expect([await exists(server, finished), await exists(server, model), await exists(server, others)]).toEqual([false, false, true]);
  });

  it('deletes a deleted account\'s failed and cancelled jobs too, and leaves its queued one to the retention', async () => {
    const leaving = await registerUser(server.url, 'leaving-ended');
    const failed = await jobRow(server, clock, EAN_FETCH, 0, leaving.id, 'failed');
    const cancelled = await jobRow(server, clock, EAN_FETCH, 0, leaving.id, 'cancelled');
    const queued = await jobRow(server, clock, EAN_FETCH, null, leaving.id);

    const res = await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: leaving.headers });
    expect(res.status).toBe(204);
    expect([await exists(server, failed), await exists(server, cancelled), await exists(server, queued)]).toEqual([false, false, true]);
  });
});
