/**
 * The photogrammetry pipeline end to end: a real server, the in-process job
 * runner and the real COLMAP on synthetic views. Skipped (with a notice from
 * helpers.ts) where COLMAP is not installed.
 */
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesUnder } from '../../helpers/files.js';
import { fixture } from '../../helpers/upload.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import {
  checkGlb,
  COLMAP,
  expectNothingStored,
  expectProblem,
  photoParts,
  plyVertexCount,
  pollUntilDone,
  startPipeline,
  status,
  syntheticViews,
  tmpEntries,
  uploadPhotos,
  type PipelineJobBody,
  type PipelineServer,
} from './helpers.js';

const STAGES = ['features', 'matching', 'mapping', 'meshing', 'export'];

describe.skipIf(!COLMAP)('photogrammetry pipeline with COLMAP', () => {
  let server: PipelineServer;
  let alice: TestUser;
  let bob: TestUser;
  let views: Buffer[];
  /** The reconstruction of the 8 views, made once by the first test and read by the later ones. */
  let done: PipelineJobBody;

  beforeAll(async () => {
    // Small limits, so one test photo can cross each: the views are ~120 KB and 640x480.
    server = await startPipeline({ MAX_UPLOAD_SIZE: '200000', MAX_IMAGE_PIXELS: '500000' });
    alice = await registerUser(server.url, 'alice');
    bob = await registerUser(server.url, 'bob');
    views = await syntheticViews(8);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('reconstructs 8 views: 202 job, stages in order to export and progress 1, photos and workspace gone afterwards', async () => {
    const res = await uploadPhotos(server.url, alice.headers, [...photoParts(views), { field: 'name', data: 'Rocket on a path' }]);
    const text = await res.text();
    expect(res.status, text).toBe(202);
    const job = JSON.parse(text) as PipelineJobBody;
    expect(res.headers.get('location')).toBe(`/pipeline/status/${job.job_id}`);
    expect(job).toMatchObject({ type: 'photogrammetry', status: 'queued', progress: 0, stage: null, user_id: alice.id, max_attempts: 1, error: null });
    expect(job.job_id).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    // Our own names, in upload order; the client's "../../evil-0.jpg" is not kept anywhere.
    expect(job.input).toEqual({ upload_id: expect.stringMatching(/^[A-Za-z0-9_-]{16,}$/), name: 'Rocket on a path', photos: ['0001.jpg', '0002.jpg', '0003.jpg', '0004.jpg', '0005.jpg', '0006.jpg', '0007.jpg', '0008.jpg'] });
    expect(JSON.stringify(job)).not.toContain('evil');

    // Far sooner than COLMAP can finish: not ready yet.
    const early = await fetch(`${server.url}/pipeline/download/${job.job_id}?format=glb`, { headers: alice.headers });
    expect(early.headers.get('content-disposition')).toBeNull();
    await expectProblem(early, 409, 'model_not_ready');

    const { job: finished, seen } = await pollUntilDone(server.url, alice.headers, job.job_id);
    expect(finished.error).toBeNull();
    expect(finished).toMatchObject({ status: 'completed', progress: 1, stage: 'export', attempts: 1 });
    // Stages only move forward, progress never goes back, and the run was seen working before it ended.
    const order = seen.filter((s) => s.stage !== null).map((s) => STAGES.indexOf(s.stage as string));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect(seen.map((s) => s.progress)).toEqual(seen.map((s) => s.progress).sort((a, b) => a - b));
    expect(seen.some((s) => s.status === 'processing' && s.progress > 0 && s.progress < 1)).toBe(true);
    expect(finished.result).toMatchObject({ stage: 'export', photos: 8, model: 'point_cloud', name: 'Rocket on a path', upload_id: job.input.upload_id });
    expect(finished.result?.registered_photos).toBeGreaterThanOrEqual(6);
    expect(finished.result?.points).toBeGreaterThan(100);
    expect(finished.result?.colmap).toMatch(/^COLMAP /);

    // The workspace is gone, the photos are gone, the two model files (and the result they belong to) are kept.
    expect(await tmpEntries(server)).toEqual([]);
    const kept = (await filesUnder(path.join(server.dataDir, 'blobs', 'pipeline'))).map((f) => path.relative(path.join(server.dataDir, 'blobs'), f)).sort();
    expect(kept).toEqual([`pipeline/${job.input.upload_id}/model.glb`, `pipeline/${job.input.upload_id}/model.ply`, `pipeline/${job.input.upload_id}/result.json`]);
    done = finished;
  }, 180_000);

  it('downloads the PLY and the GLB of the same points, with validators and ranges', async () => {
    const plyRes = await fetch(`${server.url}/pipeline/download/${done.job_id}?format=ply`, { headers: alice.headers });
    expect(plyRes.status).toBe(200);
    expect(plyRes.headers.get('content-type')).toBe('application/octet-stream');
    expect(plyRes.headers.get('content-disposition')).toBe(`attachment; filename="${done.job_id}.ply"`);
    const ply = Buffer.from(await plyRes.arrayBuffer());
    expect(ply.subarray(0, 4).toString('latin1')).toBe('ply\n');
    const vertices = plyVertexCount(ply);
    expect(vertices).toBeGreaterThan(0);
    expect(vertices).toBe(done.result?.points);

    const glbRes = await fetch(`${server.url}/pipeline/download/${done.job_id}?format=glb`, { headers: alice.headers });
    expect(glbRes.status).toBe(200);
    expect(glbRes.headers.get('content-type')).toBe('model/gltf-binary');
    expect(glbRes.headers.get('content-disposition')).toBe(`attachment; filename="${done.job_id}.glb"`);
    const { json, bin } = checkGlb(Buffer.from(await glbRes.arrayBuffer()));
    const attributes = json.meshes[0]?.primitives[0]?.attributes ?? {};
    expect(json.accessors[attributes.POSITION ?? -1]?.count).toBe(vertices);
    expect(json.accessors[attributes.COLOR_0 ?? -1]).toMatchObject({ count: vertices, componentType: 5121, normalized: true, type: 'VEC4' });

    // COLMAP 3.8 writes x, y, z as float and red, green, blue as uchar: the first point must be the GLB's first point.
    const header = ply.subarray(0, ply.indexOf('end_header\n') + 'end_header\n'.length);
    expect(header.toString('latin1')).toContain('format binary_little_endian 1.0');
    expect(header.toString('latin1')).toMatch(/property float x\nproperty float y\nproperty float z\n(property float n[xyz]\n){0,3}property uchar red\nproperty uchar green\nproperty uchar blue\nend_header/);
    const first = [0, 4, 8].map((o) => ply.readFloatLE(header.length + o));
    expect([0, 4, 8].map((o) => bin.readFloatLE(o))).toEqual(first);

    // ETag and conditional GET, and a byte range, as for stored images.
    const etag = glbRes.headers.get('etag');
    expect(etag).toMatch(/^"[0-9a-f]{64}"$/);
    const again = await fetch(`${server.url}/pipeline/download/${done.job_id}?format=glb`, { headers: { ...alice.headers, 'if-none-match': etag as string } });
    expect(again.status).toBe(304);
    const part = await fetch(`${server.url}/pipeline/download/${done.job_id}`, { headers: { ...alice.headers, range: 'bytes=0-2' } });
    expect(part.status).toBe(206);
    expect(await part.text()).toBe('ply');
  });

  it('hides a job from other users exactly as a job that does not exist, and shows it to an admin', async () => {
    const missing = await fetch(`${server.url}/pipeline/status/AAAAAAAAAAAAAAAAAAAAAA`, { headers: bob.headers });
    const missingBody = await expectProblem(missing, 404, 'job_not_found');
    for (const url of [`/pipeline/status/${done.job_id}`, `/pipeline/download/${done.job_id}?format=ply`, `/pipeline/download/${done.job_id}?format=glb`]) {
      const res = await fetch(`${server.url}${url}`, { headers: bob.headers });
      expect(res.headers.get('content-disposition')).toBeNull();
      expect(await expectProblem(res, 404, 'job_not_found')).toEqual(missingBody);
    }
    const asAdmin = await status(server.url, server.admin, done.job_id);
    expect(asAdmin.status).toBe(200);
    expect(asAdmin.body).toEqual(done);
    const download = await fetch(`${server.url}/pipeline/download/${done.job_id}?format=glb`, { headers: server.admin });
    expect(download.status).toBe(200);
    checkGlb(Buffer.from(await download.arrayBuffer()));
  });

  it('needs a signed-in caller: 401 without credentials', async () => {
    await expectProblem(await fetch(`${server.url}/pipeline/status/${done.job_id}`), 401);
    await expectProblem(await fetch(`${server.url}/pipeline/download/${done.job_id}`), 401);
    await expectProblem(await uploadPhotos(server.url, {}, photoParts(views)), 401);
    await expectProblem(await uploadPhotos(server.url, { authorization: 'Bearer not-a-token' }, photoParts(views)), 401);
  });

  it('answers 422 for a format other than ply or glb', async () => {
    const res = await fetch(`${server.url}/pipeline/download/${done.job_id}?format=obj`, { headers: alice.headers });
    const body = (await expectProblem(res, 422, 'validation_error')) as { errors?: Array<{ field: string }> };
    expect(body.errors?.map((e) => e.field)).toEqual(['querystring.format']);
  });

  it('ends a reconstruction that cannot work (8 copies of one photo) failed with reconstruction_failed, and cleans up', async () => {
    const same = Array.from({ length: 8 }, () => views[0] as Buffer);
    const res = await uploadPhotos(server.url, alice.headers, photoParts(same));
    expect(res.status).toBe(202);
    const job = (await res.json()) as PipelineJobBody;
    const { job: failed } = await pollUntilDone(server.url, alice.headers, job.job_id);
    expect(failed).toMatchObject({ status: 'failed', attempts: 1, stage: 'mapping' });
    expect(failed.error?.code).toBe('reconstruction_failed');
    expect(failed.error?.detail).toMatch(/^COLMAP could not reconstruct a model from these 8 photos\. .*\.$/);
    const download = await fetch(`${server.url}/pipeline/download/${job.job_id}?format=ply`, { headers: alice.headers });
    const problem = await expectProblem(download, 409, 'model_unavailable');
    expect(problem.detail).toContain('reconstruction_failed');
    // Workspace and photos removed; the earlier model is all that is left.
    expect(await tmpEntries(server)).toEqual([]);
    expect(await filesUnder(path.join(server.dataDir, 'blobs', 'pipeline', job.input.upload_id))).toEqual([]);
  }, 120_000);

  it('takes 200 photos, the most one upload may have: 202, each under a name of ours', async () => {
    // Jobs are not run here: the upload's answer is what is checked, not a reconstruction of 200 grey squares.
    const idle = await startPipeline({}, { startJobs: false });
    try {
      const dora = await registerUser(idle.url, 'dora');
      const tiny = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#808080' } }).jpeg().toBuffer();
      const res = await uploadPhotos(idle.url, dora.headers, photoParts(Array.from({ length: 200 }, () => tiny)));
      const text = await res.text();
      expect(res.status, text).toBe(202);
      const job = JSON.parse(text) as PipelineJobBody;
      expect(job).toMatchObject({ type: 'photogrammetry', status: 'queued', user_id: dora.id });
      expect(job.input.photos).toHaveLength(200);
      expect([job.input.photos[0], job.input.photos[199]]).toEqual(['0001.jpg', '0200.jpg']);
      expect(await filesUnder(path.join(idle.dataDir, 'blobs', 'pipeline', job.input.upload_id, 'photos'))).toHaveLength(200);
    } finally {
      await idle.close();
    }
  });

  describe('refused uploads leave nothing behind', () => {
    let clean: PipelineServer;
    let carol: TestUser;
    beforeAll(async () => {
      clean = await startPipeline({ MAX_UPLOAD_SIZE: '200000', MAX_IMAGE_PIXELS: '500000' });
      carol = await registerUser(clean.url, 'carol');
    });
    afterAll(async () => {
      await clean?.close();
    });

    it('422 too_few_photos for 7 photos', async () => {
      const body = (await expectProblem(await uploadPhotos(clean.url, carol.headers, photoParts(views.slice(0, 7))), 422, 'too_few_photos')) as { errors?: unknown };
      expect(body.errors).toEqual([{ field: 'body.files', message: 'must have at least 8 items' }]);
      await expectNothingStored(clean);
    });

    it('422 too_few_photos for none at all', async () => {
      await expectProblem(await uploadPhotos(clean.url, carol.headers, [{ field: 'name', data: 'nothing' }]), 422, 'too_few_photos');
      await expectNothingStored(clean);
    });

    it('422 too_many_photos for 201 photos', async () => {
      const tiny = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#808080' } }).jpeg().toBuffer();
      const res = await uploadPhotos(clean.url, carol.headers, photoParts(Array.from({ length: 201 }, () => tiny)));
      await expectProblem(res, 422, 'too_many_photos');
      await expectNothingStored(clean);
    });

    it('415 for a text file named .jpg among good photos, typed by its bytes', async () => {
      const parts = photoParts(views);
      parts.splice(3, 0, { field: 'files', filename: 'photo.jpg', data: Buffer.from('just some text, not a photo\n'), type: 'image/jpeg' });
      await expectProblem(await uploadPhotos(clean.url, carol.headers, parts), 415, 'unsupported_image');
      await expectNothingStored(clean);
    });

    it('415 for WebP, which COLMAP cannot read', async () => {
      const webp = await sharp(views[0]).webp().toBuffer();
      const parts = photoParts([...views.slice(0, 7), webp]);
      await expectProblem(await uploadPhotos(clean.url, carol.headers, parts), 415, 'unsupported_image');
      await expectNothingStored(clean);
    });

    it('413 for a photo over MAX_UPLOAD_SIZE, cut while streaming', async () => {
      const big = fixture('path_2560x1600_olympus_exif.jpg'); // 910 KB against a 200 KB limit
      const parts = photoParts([...views.slice(0, 5), big, ...views.slice(5)]);
      await expectProblem(await uploadPhotos(clean.url, carol.headers, parts), 413, 'file_too_large');
      await expectNothingStored(clean);
    });

    it('413 image_too_large for a photo over MAX_IMAGE_PIXELS', async () => {
      const wide = await sharp(views[0]).resize(1000, 750).jpeg({ quality: 60 }).toBuffer();
      expect(wide.length).toBeLessThan(200_000);
      await expectProblem(await uploadPhotos(clean.url, carol.headers, photoParts([...views.slice(0, 7), wide])), 413, 'image_too_large');
      await expectNothingStored(clean);
    });

    it('422 for photos in another field and for a name over 200 characters', async () => {
      const parts = [...photoParts(views.slice(0, 4)), { field: 'photo', filename: 'a.jpg', data: views[4] as Buffer, type: 'image/jpeg' }, ...photoParts(views.slice(5))];
      await expectProblem(await uploadPhotos(clean.url, carol.headers, parts), 422, 'validation_error');
      await expectNothingStored(clean);
      const named = await uploadPhotos(clean.url, carol.headers, [...photoParts(views), { field: 'name', data: 'x'.repeat(201) }]);
      const body = (await expectProblem(named, 422, 'validation_error')) as { errors?: unknown };
      expect(body.errors).toEqual([{ field: 'body.name', message: 'must have at most 200 characters' }]);
      await expectNothingStored(clean);
    });

    it('422 naming the field for a name sent twice: neither is kept, since either would drop the other', async () => {
      const twice = await uploadPhotos(clean.url, carol.headers, [{ field: 'name', data: 'first' }, ...photoParts(views), { field: 'name', data: 'second' }]);
      const body = (await expectProblem(twice, 422, 'validation_error')) as { errors?: unknown };
      expect(body.errors).toEqual([{ field: 'body.name', message: 'was sent more than once' }]);
      await expectNothingStored(clean);
    });
  });
});
