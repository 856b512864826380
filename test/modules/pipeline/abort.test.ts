/**
 * A run cut short (the kind's timeout) kills COLMAP and removes its
 * workspace and photos; more photos than the exhaustive limit are matched
 * with the sequential matcher. Real COLMAP; skipped where it is not installed.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerPipelineJobs } from '../../../src/modules/pipeline/job.js';
import { filesUnder } from '../../helpers/files.js';
import { registerUser, type TestUser } from '../../helpers/users.js';
import { COLMAP, photoParts, pollUntilDone, processesMentioning, startPipeline, syntheticViews, tmpEntries, uploadPhotos, type PipelineJobBody, type PipelineServer } from './helpers.js';

async function eventually(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}

describe.skipIf(!COLMAP)('a run cut short by its timeout', () => {
  let server: PipelineServer;
  let user: TestUser;
  beforeAll(async () => {
    // 10 s: inside COLMAP's work, which takes over a minute for these large views on an idle machine, and far
    // beyond the job's own start (a second or two on a loaded machine) before COLMAP is started.
    server = await startPipeline({}, { prepare: (ctx) => registerPipelineJobs(ctx, { timeoutMs: 10_000 }) });
    user = await registerUser(server.url, 'erin');
  });
  afterAll(async () => {
    await server?.close();
  });

  it('fails as timeout, kills COLMAP at once, removes the workspace and the photos', async () => {
    // 3x the usual size: extracting their features takes many seconds, so a COLMAP left running would still be seen below.
    const large = await Promise.all((await syntheticViews(8)).map((v) => sharp(v).resize(1920).jpeg({ quality: 90 }).toBuffer()));
    const res = await uploadPhotos(server.url, user.headers, photoParts(large));
    expect(res.status).toBe(202);
    const job = (await res.json()) as PipelineJobBody;
    let colmapSeen = false;
    const { job: ended } = await pollUntilDone(server.url, user.headers, job.job_id, 60_000, () => {
      colmapSeen ||= processesMentioning(server.dataDir).some((line) => line.includes('colmap'));
    });
    expect(colmapSeen).toBe(true);
    expect(ended).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'timeout', detail: 'The job took longer than 10000 ms.' } });
    // The runner ends the job at once; the handler has killed the child by then (SIGTERM) and cleans up right after.
    expect(await eventually(() => processesMentioning(server.dataDir).length === 0, 2_500)).toBe(true);
    expect(await eventually(async () => (await tmpEntries(server)).length === 0, 2_500)).toBe(true);
    expect(await eventually(async () => (await filesUnder(path.join(server.dataDir, 'blobs', 'pipeline'))).length === 0, 2_500)).toBe(true);
  }, 90_000);
});

describe('a run cut short while COLMAP_BIN is a wrapper script that starts COLMAP as its child', () => {
  // As a CUDA build's launcher might be: the work runs in a child of the script, not in its place (no exec).
  // Made in beforeAll, not as the file is collected: a run that filters this describe out leaves no directory.
  let dir = '';
  let childPidFile = '';
  let server: PipelineServer;
  let user: TestUser;
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-test-colmap-wrapper-'));
    const bin = path.join(dir, 'colmap');
    childPidFile = path.join(dir, 'child.pid');
    writeFileSync(
      bin,
      `#!/bin/sh
if [ "$1" = "-h" ]; then echo "COLMAP 3.8 -- Structure-from-Motion and Multi-View Stereo (test wrapper)"; exit 0; fi
sleep 600 &
echo $! > '${childPidFile}'
wait
`,
      { mode: 0o755 },
    );
    // Room for the job's start (copying the photos, `colmap -h`) before the script runs, on a loaded machine too.
    server = await startPipeline({ COLMAP_BIN: bin }, { prepare: (ctx) => registerPipelineJobs(ctx, { timeoutMs: 5_000 }) });
    user = await registerUser(server.url, 'gwen');
  });
  afterAll(async () => {
    // Should the kill not have reached it, the test still leaves no process behind.
    const pid = childPidFile && existsSync(childPidFile) ? Number(readFileSync(childPidFile, 'utf8')) : 0;
    if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("kills the wrapper's child too, so the workspace and the photos are removed", async () => {
    const res = await uploadPhotos(server.url, user.headers, photoParts(await syntheticViews(8)));
    expect(res.status).toBe(202);
    const job = (await res.json()) as PipelineJobBody;
    const { job: ended } = await pollUntilDone(server.url, user.headers, job.job_id, 30_000);
    expect(ended).toMatchObject({ status: 'failed', error: { code: 'timeout' } });
    const child = Number(readFileSync(childPidFile, 'utf8'));
    expect(child).toBeGreaterThan(0);
    expect(await eventually(() => !alive(child), 2_500)).toBe(true);
    expect(await eventually(async () => (await tmpEntries(server)).length === 0, 2_500)).toBe(true);
    expect(await eventually(async () => (await filesUnder(path.join(server.dataDir, 'blobs', 'pipeline'))).length === 0, 2_500)).toBe(true);
  }, 60_000);
});

describe.skipIf(!COLMAP)('more photos than the exhaustive matcher takes', () => {
  let server: PipelineServer;
  let user: TestUser;
  beforeAll(async () => {
    server = await startPipeline({}, { prepare: (ctx) => registerPipelineJobs(ctx, { exhaustiveMaxPhotos: 4 }) });
    user = await registerUser(server.url, 'fred');
  });
  afterAll(async () => {
    await server?.close();
  });

  it('matches them with sequential_matcher and still makes a model', async () => {
    const res = await uploadPhotos(server.url, user.headers, photoParts(await syntheticViews(8)));
    expect(res.status).toBe(202);
    const job = (await res.json()) as PipelineJobBody;
    const matchers = new Set<string>();
    const { job: ended } = await pollUntilDone(server.url, user.headers, job.job_id, 150_000, () => {
      for (const line of processesMentioning(server.dataDir)) {
        const m = /\b(\w+_matcher)\b/.exec(line);
        if (m) matchers.add(m[1] as string);
      }
    });
    expect(ended.error).toBeNull();
    expect(ended).toMatchObject({ status: 'completed', stage: 'export', progress: 1 });
    expect([...matchers]).toEqual(['sequential_matcher']);
    expect(ended.result?.points).toBeGreaterThan(0);
  }, 180_000);
});
