/**
 * An `ean_fetch` attempt whose PostgreSQL connection drops under it: the job system retries it (a transient outage),
 * so the attempt keeps the barcode's lease through the backoff, as for any transient failure, rather than freeing
 * it for another job to ask the provider in its place.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EanFetcher } from '../../../src/modules/product-images/fetch-job.js';
import * as repo from '../../../src/modules/product-images/repo.js';
import { createTestDatabase, droppedConnectionError, hasPostgres } from '../../helpers/pg.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { firstAttempt } from '../../platform/jobs/harness.js';

describe.skipIf(!hasPostgres)(`an ean_fetch attempt whose database connection drops${hasPostgres ? '' : ' (skipped: TEST_DATABASE_URL is not set)'}`, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let server: TestServer;

  beforeAll(async () => {
    database = await createTestDatabase();
    server = await startServer({ DATABASE_URL: database.url });
  });
  afterAll(async () => {
    await server?.close();
    await database?.drop();
  });

  it('keeps the barcode\'s lease when the attempt that met the outage is not the last', async () => {
    const dropped = await droppedConnectionError(database.url);
    let asked = 0;
    const fetcher = new EanFetcher(server.ctx, {
      provider: () => ({
        name: 'never-asked',
        lookup: () => Promise.reject(new Error(`the provider was asked (${++asked})`)),
      }),
    });
    // Its first progress write is the one whose connection drops.
    const attempt = firstAttempt('ean_fetch', 3, server.ctx.log, dropped);
    const ean = '4006381333931';
    await expect(fetcher.run({ ean_code: ean, description: null }, attempt)).rejects.toBe(dropped);
    expect(asked).toBe(0);
    const lease = await repo.findLease(server.ctx.db.kysely, ean);
    expect(lease).toMatchObject({ job_id: 'outage-attempt', error: null });
    expect(lease!.locked_until > new Date().toISOString()).toBe(true);
  });
});
