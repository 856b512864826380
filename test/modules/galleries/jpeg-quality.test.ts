import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../../helpers/server.js';
import { registerUser } from '../../helpers/users.js';
import { fixture, postMultipart } from '../../helpers/upload.js';

/**
 * The quality a variant was encoded at, read from the JPEG itself: its
 * luminance quantisation table. The encoder (sharp's mozjpeg, quantisation
 * table 0, trellis off: src/images/variants.ts) scales libjpeg's standard
 * table (ITU T.81 Annex K) as libjpeg does, so quality q gives exactly one table.
 */
const ANNEX_K_LUMINANCE = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109,
  103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
/** Natural (row-major) index of each zig-zag position: DQT stores a table in zig-zag order. */
const ZIGZAG = [
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15,
  23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/** libjpeg's jpeg_set_quality: the standard luminance table for `quality`, in zig-zag order. */
function expectedLuminanceTable(quality: number): number[] {
  const scale = quality < 50 ? Math.floor(5000 / quality) : 200 - quality * 2;
  return ZIGZAG.map((i) => Math.min(255, Math.max(1, Math.floor(((ANNEX_K_LUMINANCE[i] as number) * scale + 50) / 100))));
}

/** The first luminance (id 0) quantisation table of a JPEG, in zig-zag order as stored. */
function luminanceTable(jpeg: Buffer): number[] {
  expect(jpeg.readUInt16BE(0), 'SOI').toBe(0xffd8);
  for (let at = 2; at + 4 <= jpeg.length; ) {
    expect(jpeg[at], `marker at ${at}`).toBe(0xff);
    const marker = jpeg[at + 1] as number;
    const length = jpeg.readUInt16BE(at + 2);
    if (marker === 0xda) break; // start of scan: the tables come before it
    if (marker === 0xdb) {
      for (let p = at + 4; p < at + 2 + length; ) {
        const precision = (jpeg[p] as number) >> 4;
        const id = (jpeg[p] as number) & 0x0f;
        const entries = Array.from({ length: 64 }, (_, k) => (precision ? jpeg.readUInt16BE(p + 1 + 2 * k) : (jpeg[p + 1 + k] as number)));
        if (id === 0) return entries;
        p += 1 + 64 * (precision ? 2 : 1);
      }
    }
    at += 2 + length;
  }
  throw new Error('no luminance quantisation table');
}

const SIZES = ['original', 'medium', 'thumb', 'game'] as const;

/** Uploads `upload` to a fresh project and answers the luminance table of every stored size. */
async function storedTables(server: TestServer, upload: Buffer): Promise<Record<string, number[]>> {
  const user = await registerUser(server.url);
  const res = await postMultipart(`${server.url}/projects/${user.username}/images`, [{ field: 'file', filename: 'photo.jpg', data: upload, type: 'image/jpeg' }], user.headers);
  expect(res.status).toBe(201);
  const { urls } = (await res.json()) as { urls: Record<string, string> };
  const tables: Record<string, number[]> = {};
  for (const size of SIZES) {
    const variant = await fetch(`${server.url}${urls[size]}`);
    expect(variant.status, size).toBe(200);
    tables[size] = luminanceTable(Buffer.from(await variant.arrayBuffer()));
  }
  return tables;
}

let byDefault: TestServer;
let configured: TestServer;
let upload: Buffer;

beforeAll(async () => {
  // An upload at a quality Kiln never uses: a variant that kept the upload's own coding would show it.
  // Over 1600 px wide, so medium is a real reduction (resized and encoded in one pipeline) and thumb one made from kept pixels.
  upload = await sharp(fixture('path_2560x1600_olympus_exif.jpg')).jpeg({ quality: 97 }).toBuffer();
  expect(luminanceTable(upload)).toEqual(expectedLuminanceTable(97));
  [byDefault, configured] = await Promise.all([startServer(), startServer({ JPEG_QUALITY: '60' })]);
});
afterAll(async () => {
  await Promise.all([byDefault?.close(), configured?.close()]);
});

describe('JPEG_QUALITY', () => {
  it('the parser reads the quality sharp encodes at', async () => {
    const probe = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#808080' } }).jpeg({ quality: 42 }).toBuffer();
    expect(luminanceTable(probe)).toEqual(expectedLuminanceTable(42));
    expect(expectedLuminanceTable(85)[0]).toBe(5);
  });

  it('every stored variant is encoded at quality 85 by default', async () => {
    const tables = await storedTables(byDefault, upload);
    for (const size of SIZES) expect(tables[size], size).toEqual(expectedLuminanceTable(85));
  });

  it('every stored variant is encoded at JPEG_QUALITY when it is set', async () => {
    const tables = await storedTables(configured, upload);
    for (const size of SIZES) expect(tables[size], size).toEqual(expectedLuminanceTable(60));
  });
});
