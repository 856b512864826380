import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

/** Every file under `dir`, recursively, as full paths; none when `dir` does not exist (nothing was written). */
export async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
  } catch {
    return [];
  }
}

/** Polls `check` every 10 ms until it holds; throws after `timeoutMs`. */
export async function until(check: () => Promise<boolean>, timeoutMs = 5000, what = 'a condition'): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await delay(10)) {
    if (await check()) return;
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The upload temp files (`upload-*`) a server over `dataDir` is staging now. */
export async function stagedUploads(dataDir: string): Promise<string[]> {
  return (await readdir(path.join(dataDir, 'tmp'))).filter((name) => name.startsWith('upload-'));
}

/** Resolves once a server over `dataDir` is staging an upload (its temp file exists): it has passed every early check. */
export async function uploadStaging(dataDir: string): Promise<void> {
  await until(async () => (await stagedUploads(dataDir)).length > 0, 5000, 'an upload to begin staging');
}

/**
 * Makes `dir` take no new file: immutable for root (who writes through any
 * mode: EPERM then), mode 555 for anyone else (EACCES). Returns the undo.
 */
export function lockDirectory(dir: string): { code: 'EPERM' | 'EACCES'; unlock: () => void } {
  const asRoot = process.getuid?.() === 0;
  if (asRoot) execFileSync('chattr', ['+i', dir]);
  else chmodSync(dir, 0o555);
  return {
    code: asRoot ? 'EPERM' : 'EACCES',
    unlock: () => {
      if (asRoot) execFileSync('chattr', ['-i', dir]);
      else chmodSync(dir, 0o755);
    },
  };
}

/** A small tmpfs of our own, for a full disk, where the machine lets us mount one (root, outside a container that forbids it). */
export function smallDisk(megabytes: number): { dir: string; remove(): void } | null {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return null;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-small-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  return {
    dir,
    remove() {
      execFileSync('umount', [dir], { stdio: 'pipe' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Whether this machine lets the tests mount a tmpfs of their own (smallDisk): a test file asks once, at its top. */
export function canMountSmallDisk(): boolean {
  const disk = smallDisk(1);
  disk?.remove();
  return disk !== null;
}
