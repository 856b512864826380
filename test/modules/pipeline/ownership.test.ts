/**
 * Who owns the pipeline's blobs: the orphan sweep keeps those a job still
 * owns and removes the rest; deleting an account removes its photos and
 * models. No COLMAP needed: the jobs here are enqueued and never run.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepOrphanBlobs } from '../../../src/modules/blob-sweep.js';
import { dedupeKeyOf, modelKey, PHOTOGRAMMETRY, photoKey, type PipelineInput } from '../../../src/modules/pipeline/service.js';
import { newId } from '../../../src/ids.js';
import { filesUnder } from '../../helpers/files.js';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser, type TestUser } from '../../helpers/users.js';

describe('pipeline blobs and their owners', () => {
  let server: TestServer;
  let user: TestUser;
  beforeAll(async () => {
    server = await startServer();
    user = await registerUser(server.url, 'gina');
  });
  afterAll(async () => {
    await server?.close();
  });

  async function upload(userId: string | null): Promise<string> {
    const uploadId = newId();
    await server.ctx.blobs.put(photoKey(uploadId, '0001.jpg'), Buffer.from('photo'), 'image/jpeg');
    await server.ctx.blobs.put(modelKey(uploadId, 'ply'), Buffer.from('ply\n'), 'application/octet-stream');
    if (userId !== null) {
      const input: PipelineInput = { upload_id: uploadId, name: null, photos: ['0001.jpg'] };
      await server.ctx.jobs.enqueue(PHOTOGRAMMETRY, input, { userId, dedupeKey: dedupeKeyOf(uploadId) });
    }
    return uploadId;
  }

  const blobsOf = (uploadId: string) => filesUnder(path.join(server.dataDir, 'blobs', 'pipeline', uploadId));

  it('the sweep removes an upload without a job and keeps one a job owns', async () => {
    const owned = await upload(user.id);
    const orphan = await upload(null);
    const report = await sweepOrphanBlobs(server.ctx, { olderThanMs: 0, now: Date.now() + 60_000 });
    expect(report.orphans).toEqual([`pipeline/${orphan}`]);
    expect(await blobsOf(orphan)).toEqual([]);
    expect(await blobsOf(owned)).toHaveLength(2);
  });

  it('deleting the account removes its photos and models, and no one else\'s', async () => {
    const other = await registerUser(server.url, 'hank');
    const mine = [await upload(user.id), await upload(user.id)];
    const theirs = await upload(other.id);
    const res = await fetch(`${server.url}/users/me`, { method: 'DELETE', headers: user.headers });
    expect(res.status).toBe(204);
    for (const id of mine) expect(await blobsOf(id)).toEqual([]);
    expect(await blobsOf(theirs)).toHaveLength(2);
  });
});
