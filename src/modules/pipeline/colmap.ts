/**
 * COLMAP as a child process: whether the configured binary runs at all
 * (checked once and remembered, so an upload can be refused with 503 before
 * its body is read), and running one COLMAP command with its output read
 * line by line for progress and killed when the job's signal aborts; and
 * reading how many photos a model the mapper wrote has placed.
 *
 * Only arguments this module builds are passed: option names of our own and
 * paths inside the job's workspace. Nothing a user sent reaches a command line.
 */
import { execFile, spawn } from 'node:child_process';
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { ServiceUnavailable } from '../../errors.js';
import { isMissing } from '../../platform/files.js';

export interface ColmapCheck {
  ok: boolean;
  /** The first line of `colmap -h` ("COLMAP 3.8 -- …") or why it did not run. */
  version: string;
}

/** A binary that answered is remembered for good; a missing one is asked again after this, so installing it needs no restart. */
const RECHECK_MISSING_MS = 30_000;

const checks = new Map<string, { at: number; check: Promise<ColmapCheck> }>();

function probe(bin: string): Promise<ColmapCheck> {
  return new Promise((resolve) => {
    execFile(bin, ['-h'], { timeout: 15_000, maxBuffer: 1024 * 1024 }, (err, stdout) => {
      const first = stdout.split('\n').find((line) => line.trim() !== '')?.trim() ?? '';
      // `colmap -h` exits 0 and names itself; anything else is not a COLMAP we can drive.
      if (err || !/^COLMAP\b/.test(first)) resolve({ ok: false, version: err ? err.message : `unexpected output: ${first.slice(0, 200)}` });
      else resolve({ ok: true, version: first });
    });
  });
}

export function checkColmap(bin: string, now = Date.now()): Promise<ColmapCheck> {
  const known = checks.get(bin);
  if (known) {
    const stale = now - known.at > RECHECK_MISSING_MS;
    // A pending or successful check is reused; only a failed one is asked again once it is stale.
    if (!stale) return known.check;
    return known.check.then((c) => (c.ok ? c : refresh(bin, now)));
  }
  return refresh(bin, now);
}

function refresh(bin: string, now: number): Promise<ColmapCheck> {
  const check = probe(bin);
  checks.set(bin, { at: now, check });
  return check;
}

export function colmapUnavailable(): ServiceUnavailable {
  return new ServiceUnavailable(
    'The photogrammetry pipeline needs COLMAP, which is not installed on this server: install the Debian package colmap, or set COLMAP_BIN to the path of a COLMAP binary.',
    'colmap_unavailable',
  );
}

/** 503 `colmap_unavailable` unless the configured COLMAP answers. */
export async function requireColmap(bin: string): Promise<ColmapCheck> {
  const check = await checkColmap(bin);
  if (!check.ok) throw colmapUnavailable();
  return check;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines of stdout and stderr together, for the log when a step fails. */
  tail: string[];
}

export class ColmapNotFound extends Error {}

const TAIL_LINES = 40;
/** After SIGTERM, COLMAP gets this long to exit before SIGKILL. */
const KILL_GRACE_MS = 2_000;

/**
 * Runs `bin command ...args` in `cwd`, calling `onLine` for every output line.
 * Resolves when the process has exited (also after a kill on abort: the
 * caller looks at the signal). Rejects with ColmapNotFound when the binary
 * cannot be started.
 */
export function runColmap(bin: string, args: readonly string[], opts: { cwd: string; signal: AbortSignal; onLine?: (line: string) => void }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    if (opts.signal.aborted) {
      resolve({ code: null, signal: 'SIGTERM', tail: [] });
      return;
    }
    // A process group of its own: COLMAP_BIN may be a wrapper script (a CUDA build's launcher, say) that starts
    // COLMAP as its child, and a kill must reach that child too, or it runs on and holds the workspace.
    const child = spawn(bin, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, QT_QPA_PLATFORM: 'offscreen' }, detached: true });
    const tail: string[] = [];
    let killTimer: NodeJS.Timeout | undefined;
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // ESRCH: every process of the group has exited already.
      }
    };
    const onAbort = () => {
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
    };
    opts.signal.addEventListener('abort', onAbort, { once: true });
    const lines = (stream: NodeJS.ReadableStream) => {
      let rest = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const parts = (rest + chunk).split(/\r?\n/);
        rest = parts.pop() ?? '';
        for (const line of parts) take(line);
      });
      stream.on('end', () => rest !== '' && take(rest));
    };
    const take = (line: string) => {
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      opts.onLine?.(line);
    };
    lines(child.stdout);
    lines(child.stderr);
    child.once('error', (err: NodeJS.ErrnoException) => {
      opts.signal.removeEventListener('abort', onAbort);
      clearTimeout(killTimer);
      reject(err.code === 'ENOENT' || err.code === 'EACCES' ? new ColmapNotFound(`cannot run ${bin}: ${err.code}`) : err);
    });
    child.once('close', (code, signal) => {
      opts.signal.removeEventListener('abort', onAbort);
      clearTimeout(killTimer);
      resolve({ code, signal, tail });
    });
  });
}

/** One of the mapper's models: its directory under sparse/ and how many photos it placed. */
export interface SparseModel {
  dir: string;
  registered: number;
}

/** The mapper may make several models (sparse/0, sparse/1, …): the one with most photos placed. */
export async function largestSparseModel(sparse: string): Promise<SparseModel | null> {
  let best: SparseModel | null = null;
  for (const entry of await readdir(sparse, { withFileTypes: true })) {
    if (!entry.isDirectory() || !/^\d+$/.test(entry.name)) continue;
    const dir = path.join(sparse, entry.name);
    const registered = await registeredImages(path.join(dir, 'images.bin'));
    if (registered > 0 && (!best || registered > best.registered)) best = { dir, registered };
  }
  return best;
}

/** images.bin begins with the number of registered images, a little-endian uint64 (COLMAP's binary model format). */
async function registeredImages(file: string): Promise<number> {
  try {
    const handle = await open(file, 'r');
    try {
      const head = Buffer.alloc(8);
      const { bytesRead } = await handle.read(head, 0, 8, 0);
      return bytesRead === 8 ? Number(head.readBigUInt64LE(0)) : 0;
    } finally {
      await handle.close();
    }
  } catch (err) {
    // No images.bin: the mapper left an empty model directory. Any other failure (permissions, no descriptors) fails the job.
    if (isMissing(err)) return 0;
    throw err;
  }
}
