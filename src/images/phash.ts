/**
 * Perceptual hash of a photo (the classic DCT pHash) and the comparisons the
 * custom-order duplicate check needs. Pure functions over pixels: decoding and
 * downscaling happen in quality.ts with sharp, so this file never touches I/O.
 *
 * Why DCT pHash: the low frequencies of a picture survive resizing, JPEG
 * re-encoding and mild colour changes, so two uploads of "the same picture"
 * land a few bits apart while different photos land about half the bits apart.
 */

/** Side of the square greyscale thumbnail the hash is computed from. */
export const PHASH_INPUT_SIZE = 32;

/** Side of the low-frequency block kept from the DCT (8x8 = 64 bits). */
const BLOCK = 8;

/**
 * Largest Hamming distance (of 64 bits) at which two photos count as the same
 * picture. Calibrated on the corpus by bench/quality-calibration.ts (see
 * docs/quality.md): resized and re-encoded copies stay within a few bits,
 * distinct corpus photos are 20+ bits apart.
 */
export const DUPLICATE_MAX_DISTANCE = 10;

const HEX64 = /^[0-9a-f]{16}$/;

// cos((2x+1)uπ/2N) for u in 0..BLOCK, computed once: the hash only needs the
// first BLOCK+1 frequencies, so a full 32x32 DCT would waste 90% of the work.
const COS_TABLE: Float64Array = (() => {
  const n = PHASH_INPUT_SIZE;
  const table = new Float64Array((BLOCK + 1) * n);
  for (let u = 0; u <= BLOCK; u++) {
    for (let x = 0; x < n; x++) table[u * n + x] = Math.cos(((2 * x + 1) * u * Math.PI) / (2 * n));
  }
  return table;
})();

/**
 * pHash of a 32x32 single-channel 8-bit thumbnail (row-major).
 *
 * Takes the DCT coefficients (u, v) with 1 <= u, v <= 8 — the 8x8 block just
 * past the DC row and column, as phash.org does, because DC and the pure
 * row/column terms mostly encode overall brightness — and sets bit i when
 * coefficient i is above the block's median. Returns 16 lowercase hex digits.
 */
export function phashFromThumbnail(grey: Uint8Array): string {
  const n = PHASH_INPUT_SIZE;
  if (grey.length !== n * n) {
    throw new RangeError(`pHash needs a ${n}x${n} single-channel thumbnail, got ${grey.length} bytes`);
  }
  // Separable DCT: first along rows (n rows x BLOCK+1 freqs), then columns.
  const rows = new Float64Array(n * (BLOCK + 1));
  for (let y = 0; y < n; y++) {
    for (let u = 1; u <= BLOCK; u++) {
      let sum = 0;
      for (let x = 0; x < n; x++) sum += (grey[y * n + x] ?? 0) * (COS_TABLE[u * n + x] ?? 0);
      rows[y * (BLOCK + 1) + u] = sum;
    }
  }
  const coeffs: number[] = [];
  for (let v = 1; v <= BLOCK; v++) {
    for (let u = 1; u <= BLOCK; u++) {
      let sum = 0;
      for (let y = 0; y < n; y++) sum += (rows[y * (BLOCK + 1) + u] ?? 0) * (COS_TABLE[v * n + y] ?? 0);
      coeffs.push(sum);
    }
  }
  const median = medianOf(coeffs);
  let bits = 0n;
  for (const c of coeffs) bits = (bits << 1n) | (c > median ? 1n : 0n);
  return bits.toString(16).padStart(16, '0');
}

/** Number of differing bits between two 64-bit hex pHashes. */
export function hammingDistance(a: string, b: string): number {
  let x = parseHash(a) ^ parseHash(b);
  let count = 0;
  while (x !== 0n) {
    x &= x - 1n;
    count++;
  }
  return count;
}

/** An earlier file of the same order, as far as the duplicate check cares. */
export interface HashedFile {
  file_id: string;
  /** Null for files that had no hash (not a photo, or checked before hashes existed). */
  phash: string | null;
}

/**
 * The file_id of the first earlier file whose pHash is within `maxDistance`
 * bits of `phash`, or null. "First" keeps the answer stable: a third copy
 * points at the original, not at the second copy.
 */
export function findDuplicate(
  phash: string,
  earlier: ReadonlyArray<HashedFile>,
  maxDistance: number = DUPLICATE_MAX_DISTANCE,
): string | null {
  for (const file of earlier) {
    if (file.phash !== null && hammingDistance(phash, file.phash) <= maxDistance) return file.file_id;
  }
  return null;
}

function parseHash(hash: string): bigint {
  const h = hash.toLowerCase();
  // A malformed hash would silently compare as "very different"; better to fail loudly.
  if (!HEX64.test(h)) throw new RangeError(`not a 64-bit hex pHash: ${JSON.stringify(hash)}`);
  return BigInt(`0x${h}`);
}

function medianOf(values: number[]): number {
  const sorted = [...values].sort((p, q) => p - q);
  const mid = sorted.length >> 1;
  return ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}
