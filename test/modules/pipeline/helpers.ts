/** Shared pieces of the pipeline tests: a synthetic multi-view scene, uploads, polling, "nothing stored" checks. */
import { execFileSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { expect } from 'vitest';
import type { Env } from '../../../src/config.js';
import { filesUnder } from '../../helpers/files.js';
import { startServer, type StartOptions, type TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { loginHeaders } from '../../helpers/users.js';

export const ADMIN = { ADMIN_EMAIL: 'maker@example.com', ADMIN_PASSWORD: 'maker-password-123' };

/** Whether the `colmap` on PATH runs; the tests that reconstruct are skipped with a notice when it does not. */
export function colmapInstalled(): boolean {
  try {
    return /^COLMAP/m.test(execFileSync('colmap', ['-h'], { encoding: 'utf8', timeout: 15_000 }));
  } catch {
    return false;
  }
}

export const COLMAP = colmapInstalled();
if (!COLMAP) console.warn('[pipeline tests] COLMAP is not installed (Debian package `colmap`): the reconstruction tests are skipped.');

/**
 * `count` views of two textured planes at different depths (a background
 * photo and a foreground photo) seen by a camera moving sideways: the
 * foreground shifts 4x as much as the background between views, which gives
 * COLMAP the parallax to triangulate. Made from the repository's fixtures.
 */
export async function syntheticViews(count = 8): Promise<Buffer[]> {
  const bg = await sharp(fixture('path_2560x1600_olympus_exif.jpg')).resize(1600).raw().toBuffer({ resolveWithObject: true });
  const fg = await sharp(fixture('rocket_small_640x427.jpg')).resize(400).jpeg().toBuffer();
  const W = 640;
  const H = 480;
  const views: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const tx = i * 45 - 150;
    const ty = (i % 3) * 20;
    const bgx = 300 + Math.round(tx / 4);
    const bgy = 200 + Math.round(ty / 4);
    const base = sharp(bg.data, { raw: bg.info }).extract({ left: bgx, top: bgy, width: W, height: H });
    views.push(await base.composite([{ input: fg, left: 120 - tx + 150, top: 40 - ty + 20 }]).jpeg({ quality: 92 }).toBuffer());
  }
  return views;
}

export interface PipelineServer extends TestServer {
  admin: { authorization: string };
}

/** A real server with the in-process job runner and an admin. */
export async function startPipeline(env: Env = {}, options: StartOptions = {}): Promise<PipelineServer> {
  const server = await startServer({ ...ADMIN, ...env }, { startJobs: true, ...options });
  return Object.assign(server, { admin: await loginHeaders(server.url, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD) });
}

export interface PipelineJobBody {
  job_id: string;
  type: string;
  status: string;
  progress: number;
  stage: string | null;
  attempts: number;
  max_attempts: number;
  input: { upload_id: string; name: string | null; photos: string[] };
  result: Record<string, unknown> | null;
  error: { code: string; detail: string } | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  user_id: string | null;
}

export function photoParts(photos: Buffer[], type = 'image/jpeg'): Array<{ field: string; filename: string; data: Buffer; type: string }> {
  // Client file names that would be dangerous as paths: they must never be used as one.
  return photos.map((data, i) => ({ field: 'files', filename: `../../evil-${i}.jpg`, data, type }));
}

export function uploadPhotos(base: string, headers: Record<string, string>, parts: Array<{ field: string; filename?: string; data: Buffer | string; type?: string }>): Promise<Response> {
  return postMultipart(`${base}/pipeline/upload`, parts, headers);
}

export async function status(base: string, headers: Record<string, string>, jobId: string): Promise<{ status: number; body: PipelineJobBody }> {
  const res = await fetch(`${base}/pipeline/status/${jobId}`, { headers });
  return { status: res.status, body: (await res.json()) as PipelineJobBody };
}

/**
 * Polls the status route until the job has ended; returns the last answer and
 * every (stage, progress) seen on the way, in order.
 */
export async function pollUntilDone(
  base: string,
  headers: Record<string, string>,
  jobId: string,
  timeoutMs = 120_000,
  onPoll?: (job: PipelineJobBody) => void,
): Promise<{ job: PipelineJobBody; seen: Array<{ stage: string | null; progress: number; status: string }> }> {
  const seen: Array<{ stage: string | null; progress: number; status: string }> = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status: code, body } = await status(base, headers, jobId);
    if (code !== 200) throw new Error(`status answered ${code}: ${JSON.stringify(body)}`);
    onPoll?.(body);
    const last = seen.at(-1);
    if (!last || last.stage !== body.stage || last.progress !== body.progress || last.status !== body.status) seen.push({ stage: body.stage, progress: body.progress, status: body.status });
    if (['completed', 'failed', 'cancelled'].includes(body.status)) return { job: body, seen };
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${body.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export { expectProblem } from '../../helpers/problem.js';

/** Entries directly in DATA_DIR/tmp: staged uploads and job workspaces (directories) alike. */
export async function tmpEntries(server: TestServer): Promise<string[]> {
  try {
    return await readdir(path.join(server.dataDir, 'tmp'));
  } catch {
    return [];
  }
}

/** No pipeline blob, no temp file or workspace, no photogrammetry job; the server still healthy. */
export async function expectNothingStored(server: TestServer): Promise<void> {
  expect(await filesUnder(path.join(server.dataDir, 'blobs', 'pipeline'))).toEqual([]);
  expect(await tmpEntries(server)).toEqual([]);
  expect(await server.ctx.db.kysely.selectFrom('jobs').select('job_id').where('type', '=', 'photogrammetry').execute()).toEqual([]);
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
}

/** Running processes whose command line mentions `needle` (a workspace path): a killed COLMAP must not be among them. */
export function processesMentioning(needle: string): string[] {
  const out = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.includes(needle) && !line.startsWith('ps '));
}

/** The vertex count a PLY header declares (read here, not with the code under test). */
export function plyVertexCount(ply: Buffer): number {
  const header = ply.subarray(0, ply.indexOf('end_header')).toString('latin1');
  const m = /^element vertex (\d+)$/m.exec(header);
  if (!m) throw new Error('PLY header has no vertex element');
  return Number(m[1]);
}

export interface GlbFacts {
  json: {
    asset: { version: string };
    meshes: Array<{ primitives: Array<{ mode?: number; attributes: Record<string, number> }> }>;
    accessors: Array<{ bufferView: number; componentType: number; count: number; type: string; normalized?: boolean; min?: number[]; max?: number[] }>;
    bufferViews: Array<{ buffer: number; byteOffset?: number; byteLength: number }>;
    buffers: Array<{ byteLength: number }>;
  };
  bin: Buffer;
}

/**
 * Checks a GLB against the glTF 2.0 container rules (header, 4-byte aligned
 * JSON and BIN chunks, lengths that add up, the JSON chunk padded with
 * spaces) and the accessors of a point cloud; returns its parts.
 */
export function checkGlb(glb: Buffer): GlbFacts {
  expect(glb.readUInt32LE(0)).toBe(0x46546c67); // "glTF"
  expect(glb.subarray(0, 4).toString('latin1')).toBe('glTF');
  expect(glb.readUInt32LE(4)).toBe(2);
  expect(glb.readUInt32LE(8)).toBe(glb.length);
  const jsonLength = glb.readUInt32LE(12);
  expect(glb.subarray(16, 20).toString('latin1')).toBe('JSON');
  expect(jsonLength % 4).toBe(0);
  const jsonText = glb.subarray(20, 20 + jsonLength).toString('utf8');
  expect(jsonText).toMatch(/} *$/); // padded with spaces only
  const json = JSON.parse(jsonText) as GlbFacts['json'];
  const binStart = 20 + jsonLength;
  const binLength = glb.readUInt32LE(binStart);
  expect(glb.readUInt32LE(binStart + 4)).toBe(0x004e4942); // "BIN\0"
  expect(binLength % 4).toBe(0);
  expect(binStart + 8 + binLength).toBe(glb.length);
  const bin = glb.subarray(binStart + 8);
  expect(json.asset.version).toBe('2.0');
  expect(json.buffers).toEqual([{ byteLength: binLength }]);
  const primitive = json.meshes[0]?.primitives[0];
  expect(primitive?.mode).toBe(0); // POINTS
  const position = json.accessors[primitive?.attributes.POSITION ?? -1];
  expect(position).toMatchObject({ componentType: 5126, type: 'VEC3' });
  expect(position?.min).toHaveLength(3);
  expect(position?.max).toHaveLength(3);
  for (const accessor of json.accessors) {
    const view = json.bufferViews[accessor.bufferView];
    const size = { VEC3: 3, VEC4: 4 }[accessor.type] ?? 0;
    const bytes = { 5126: 4, 5121: 1 }[accessor.componentType] ?? 0;
    expect(view?.byteLength).toBe(accessor.count * size * bytes);
    expect((view?.byteOffset ?? 0) % 4).toBe(0);
    expect((view?.byteOffset ?? 0) + (view?.byteLength ?? 0)).toBeLessThanOrEqual(binLength);
  }
  // Every position inside the declared bounds (the spec requires exact min/max for POSITION).
  const count = position?.count ?? 0;
  const min = position?.min ?? [];
  const max = position?.max ?? [];
  const seenMin = [Infinity, Infinity, Infinity];
  const seenMax = [-Infinity, -Infinity, -Infinity];
  for (let i = 0; i < count; i++) {
    for (let c = 0; c < 3; c++) {
      const v = bin.readFloatLE(i * 12 + c * 4);
      seenMin[c] = Math.min(seenMin[c] as number, v);
      seenMax[c] = Math.max(seenMax[c] as number, v);
    }
  }
  expect(seenMin).toEqual(min);
  expect(seenMax).toEqual(max);
  return { json, bin };
}
