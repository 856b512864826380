/**
 * The pipeline scaled out: PostgreSQL for the rows, BullMQ on Redis for the
 * jobs, an API Kiln that only enqueues and a worker Kiln that runs COLMAP,
 * sharing one DATA_DIR (the blob store). The photos reach the worker through
 * the blob store, and the model reaches the API the same way.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Context } from '../../../src/context.js';
import { BullJobRunner } from '../../../src/platform/jobs/index.js';
import { createTestDatabase, hasPostgres } from '../../helpers/pg.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { checkGlb, COLMAP, photoParts, pollUntilDone, startPipeline, syntheticViews, uploadPhotos, type PipelineJobBody, type PipelineServer } from './helpers.js';

const REDIS_URL = process.env.TEST_REDIS_URL;

describe.skipIf(!COLMAP || !REDIS_URL || !hasPostgres)('photogrammetry through BullMQ on PostgreSQL (API enqueues, a worker reconstructs)', () => {
  const prefix = `kiln-test-${randomBytes(5).toString('hex')}`;
  const bull = (role: 'serve' | 'worker') => (base: Context): Context => {
    const ctx: Context = { ...base, jobs: new BullJobRunner({ db: base.db, log: base.log, clock: base.clock }, { redisUrl: REDIS_URL as string, role, concurrency: 1, prefix, lockDurationMs: 5000, stalledIntervalMs: 2000 }) };
    base.onClose(() => ctx.jobs.stop(1000));
    return ctx;
  };
  let api: PipelineServer;
  let worker: PipelineServer;
  let drop: () => Promise<void>;
  let alice: TestUser;

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    const env = { DATABASE_URL: db.url, JWT_SECRET: 'one-secret-for-the-api-and-its-worker-process' };
    api = await startPipeline(env, { prepare: bull('serve') });
    worker = await startPipeline(env, { dataDir: api.dataDir, prepare: bull('worker') });
    alice = await registerUser(api.url, 'alice');
  }, 60_000);
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await drop?.();
    if (REDIS_URL) {
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });

  it('the worker makes the model from the photos the API stored, and the API serves it', async () => {
    const res = await uploadPhotos(api.url, alice.headers, photoParts(await syntheticViews(8)));
    const text = await res.text();
    expect(res.status, text).toBe(202);
    const job = JSON.parse(text) as PipelineJobBody;
    const { job: finished } = await pollUntilDone(api.url, alice.headers, job.job_id, 170_000);
    expect(finished.error).toBeNull();
    expect(finished).toMatchObject({ status: 'completed', progress: 1, stage: 'export' });
    const glb = await fetch(`${api.url}/pipeline/download/${job.job_id}?format=glb`, { headers: alice.headers });
    expect(glb.status).toBe(200);
    expect(checkGlb(Buffer.from(await glb.arrayBuffer())).json.accessors[0]?.count).toBe(finished.result?.points);
  }, 180_000);
});
