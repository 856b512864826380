/**
 * The job's own guards, without a reconstruction (runs everywhere): a run
 * repeated after the first one stored the model completes from it, and a
 * worker without COLMAP fails the job saying so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../../src/ids.js';
import { dedupeKeyOf, PHOTOGRAMMETRY, resultKey, type PipelineInput, type PipelineResult } from '../../../src/modules/pipeline/service.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { tmpEntries } from './helpers.js';

describe('a photogrammetry job without a reconstruction to do', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ COLMAP_BIN: '/nonexistent/colmap' }, { startJobs: true });
  });
  afterAll(async () => {
    await server?.close();
  });

  async function run(uploadId: string): Promise<{ status: string; result: unknown; error: unknown }> {
    const input: PipelineInput = { upload_id: uploadId, name: null, photos: ['0001.jpg'] };
    const job = await server.ctx.jobs.enqueue(PHOTOGRAMMETRY, input, { userId: null, dedupeKey: dedupeKeyOf(uploadId) });
    return server.ctx.jobs.waitFor(job.job_id, 10_000);
  }

  it('completes from the result an earlier run stored with the model, without COLMAP or photos', async () => {
    const uploadId = newId();
    const stored: PipelineResult = {
      stage: 'export',
      upload_id: uploadId,
      name: null,
      photos: 8,
      registered_photos: 8,
      points: 3,
      model: 'point_cloud',
      colmap: 'COLMAP 3.8',
      files: { ply: { bytes: 10, etag: 'a'.repeat(64) }, glb: { bytes: 20, etag: 'b'.repeat(64) } },
      finished_model_at: new Date().toISOString(),
    };
    await server.ctx.blobs.put(resultKey(uploadId), Buffer.from(JSON.stringify(stored)), 'application/json');
    const job = await run(uploadId);
    expect(job).toMatchObject({ status: 'completed', result: stored, error: null });
  });

  it('fails as colmap_unavailable where COLMAP does not run, and removes its workspace', async () => {
    const job = await run(newId());
    expect(job.status).toBe('failed');
    expect(job.error).toEqual({ code: 'colmap_unavailable', detail: expect.stringContaining('COLMAP_BIN') });
    expect(await tmpEntries(server)).toEqual([]);
  });
});
