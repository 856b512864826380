import { readdir } from 'node:fs/promises';
import path from 'node:path';

/** Every file under `dir`, recursively, as full paths; none when `dir` does not exist (nothing was written). */
export async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
  } catch {
    return [];
  }
}
