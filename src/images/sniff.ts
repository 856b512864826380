/**
 * Image type sniffing: the type of an upload is decided from its first bytes
 * (magic numbers) only, never from its name or the client's Content-Type.
 * Accepted: JPEG, PNG, WebP, AVIF and HEIC/HEIF. Everything else (text, SVG,
 * HTML, GIF, PDF, empty) is refused before any decoder sees it. A caller
 * may take fewer types (stageUpload's `accept`: custom orders refuse AVIF/HEIC).
 */

export type ImageType = 'jpeg' | 'png' | 'webp' | 'avif' | 'heic';

export const IMAGE_MIME: Readonly<Record<ImageType, string>> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
  heic: 'image/heic',
};

/** How many leading bytes `sniffImageType` needs to see (an ISO-BMFF ftyp box with a few brands). */
export const SNIFF_BYTES = 64;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const AVIF_BRANDS = new Set(['avif', 'avis']);
// mif1/msf1 are the generic HEIF brands; without an AVIF brand beside them the file is HEIC/HEIF.
const HEIC_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'mif1', 'msf1']);

function ascii(head: Buffer, start: number, end: number): string {
  return head.subarray(start, end).toString('latin1');
}

/** AVIF and HEIC share the ISO-BMFF container: the `ftyp` box's brands tell them apart. */
function sniffFtyp(head: Buffer): ImageType | null {
  if (head.length < 16 || ascii(head, 4, 8) !== 'ftyp') return null;
  const boxSize = head.readUInt32BE(0);
  if (boxSize < 16 || boxSize % 4 !== 0) return null;
  const end = Math.min(boxSize, head.length);
  const brands = [ascii(head, 8, 12)];
  for (let at = 16; at + 4 <= end; at += 4) brands.push(ascii(head, at, at + 4));
  if (brands.some((b) => AVIF_BRANDS.has(b))) return 'avif';
  if (brands.some((b) => HEIC_BRANDS.has(b))) return 'heic';
  return null;
}

export function sniffImageType(head: Buffer): ImageType | null {
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'jpeg';
  if (head.length >= 8 && head.subarray(0, 8).equals(PNG_SIGNATURE)) return 'png';
  if (head.length >= 12 && ascii(head, 0, 4) === 'RIFF' && ascii(head, 8, 12) === 'WEBP') return 'webp';
  return sniffFtyp(head);
}
