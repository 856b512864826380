/**
 * Where benchmarks find the shared photo corpus: `../shared/corpus` beside
 * the repository (a user's clone does not have it, so benches skip).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

export const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..');
export const CORPUS_DIR = path.resolve(REPO_ROOT, '..', 'shared', 'corpus');

/** The >= 8 MP camera JPEGs the variant benchmark uses (corpus README). */
export const LARGE_PHOTOS = [
  'kleiber_6028x3391_exif.jpg',
  'elephants_5640x3172_sony_exif.jpg',
  'infinitesea_4096x4096_progressive_exif.jpg',
  'seeding_5312x2988.jpg',
  'dragonfly_4224x3168.jpg',
  'sunset_4272x2848.jpg',
  'wine_portrait_2560x3837.jpg',
];

/** Absolute paths of `names` in the corpus, or null (with a message) when the corpus is absent. */
export function corpusFiles(names: readonly string[], bench: string): string[] | null {
  const files = names.map((n) => path.join(CORPUS_DIR, n));
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length > 0) {
    console.log(`${bench}: skipped, the photo corpus is not at ${CORPUS_DIR} (missing ${path.basename(missing[0] as string)}).`);
    return null;
  }
  return files;
}
