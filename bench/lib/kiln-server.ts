/**
 * The built Kiln server as a child process for HTTP benches: builds dist/
 * when it is missing or older than src/, runs `node dist/src/main.js serve`
 * through the tests' startKiln (127.0.0.1, a free port, RATE_LIMIT_*=0,
 * LOG_LEVEL=warn) over a temp DATA_DIR that close() removes, and samples the
 * server process's resident memory from /proc (Linux only; elsewhere n/a).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MAIN, startKiln, type KilnProcess } from '../../test/helpers/process.js';
import { registerUser, type TestUser } from '../../test/helpers/users.js';
import { REPO_ROOT } from './corpus.js';

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

/** `npm run build` when dist/src/main.js is missing or a file in src/ is newer; benches measure the current source. */
export function ensureBuilt(): void {
  if (existsSync(MAIN) && statSync(MAIN).mtimeMs >= newestMtime(path.join(REPO_ROOT, 'src'))) return;
  console.log('dist/ is missing or older than src/: running `npm run build` first');
  const r = spawnSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
  if (r.status === 0) return;
  // tsc still emits on type errors; a half-edited src/ should not stop a measurement of what did compile.
  if (!existsSync(MAIN)) throw new Error('npm run build failed');
  console.log('WARNING: `npm run build` reported errors; measuring dist/ as emitted.');
}

export interface BenchServer {
  kiln: KilnProcess;
  url: string;
  pid: number;
  dataDir: string;
  user: TestUser;
  close(): Promise<void>;
}

/** Starts the built server over a fresh temp DATA_DIR and registers one user. */
export async function startBenchServer(env: Record<string, string> = {}): Promise<BenchServer> {
  ensureBuilt();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-data-'));
  let kiln: KilnProcess;
  try {
    kiln = await startKiln({ DATA_DIR: dataDir, LOG_LEVEL: 'warn', RATE_LIMIT_AUTH: '0', RATE_LIMIT_UPLOAD: '0', RATE_LIMIT_DEFAULT: '0', ...env });
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const close = async (): Promise<void> => {
    await kiln.stop('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const user = await registerUser(kiln.url);
    return { kiln, url: kiln.url, pid: kiln.child.pid as number, dataDir, user, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** One field of /proc/<pid>/status in MB (VmRSS, VmHWM), or null when unreadable. */
function statusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null; // the process is gone or this is not Linux: the figure is reported as n/a
  }
}

export const rssMb = (pid: number): number | null => statusMb(pid, 'VmRSS');

/**
 * Peak RSS of another process over a window: VmRSS sampled every 50 ms, and
 * the kernel's own high-water mark (VmHWM), which start() resets by writing
 * 5 to /proc/<pid>/clear_refs so each window is measured on its own.
 */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  private sampled = 0;
  private hwmReset = false;

  constructor(private readonly pid: number) {}

  start(): this {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
      this.hwmReset = true;
    } catch {
      this.hwmReset = false; // not permitted or not Linux: the 50 ms samples alone give the peak
    }
    this.sampled = rssMb(this.pid) ?? 0;
    this.timer = setInterval(() => {
      this.sampled = Math.max(this.sampled, rssMb(this.pid) ?? 0);
    }, 50);
    this.timer.unref();
    return this;
  }

  /** Stops sampling; the peak in MB is the larger of the samples and VmHWM (when it could be reset), null when nothing was readable. */
  stop(): number | null {
    clearInterval(this.timer);
    const hwm = this.hwmReset ? statusMb(this.pid, 'VmHWM') : null;
    const peak = Math.max(this.sampled, hwm ?? 0);
    return peak > 0 ? peak : null;
  }
}
