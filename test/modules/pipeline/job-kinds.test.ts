/**
 * The pipeline's routes show photogrammetry jobs only: a job of another kind
 * (an ean_fetch, say) is a 404 there, exactly as a job that does not exist,
 * to its owner and to an admin alike. No COLMAP needed: nothing runs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EAN_FETCH, type EanFetchInput } from '../../../src/modules/product-images/service.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { expectProblem, startPipeline, type PipelineServer } from './helpers.js';

describe('pipeline routes and jobs of other kinds', () => {
  let server: PipelineServer;
  let user: TestUser;
  beforeAll(async () => {
    server = await startPipeline({}, { startJobs: false });
    user = await registerUser(server.url, 'ida');
  });
  afterAll(async () => {
    await server?.close();
  });

  it('answers 404 job_not_found for an ean_fetch job on status and download, as for a job that does not exist', async () => {
    const input: EanFetchInput = { ean_code: '4006381333931', description: null };
    const job = await server.ctx.jobs.enqueue(EAN_FETCH, input, { userId: user.id });
    // The job is there, and its owner sees it where jobs of its kind are shown.
    const own = await fetch(`${server.url}/api/v1/jobs/${job.job_id}`, { headers: user.headers });
    expect(own.status).toBe(200);
    expect(await own.json()).toMatchObject({ job_id: job.job_id, type: EAN_FETCH });

    const missing = await expectProblem(await fetch(`${server.url}/pipeline/status/AAAAAAAAAAAAAAAAAAAAAA`, { headers: user.headers }), 404, 'job_not_found');
    for (const headers of [user.headers, server.admin]) {
      for (const url of [`/pipeline/status/${job.job_id}`, `/pipeline/download/${job.job_id}?format=ply`]) {
        const res = await fetch(`${server.url}${url}`, { headers });
        expect(res.headers.get('content-disposition')).toBeNull();
        expect(await expectProblem(res, 404, 'job_not_found'), url).toEqual(missing);
      }
    }
  });
});
