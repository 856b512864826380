/** Shared pieces of the custom-order tests: photos, uploads, an admin, and "nothing stored" checks. */
import path from 'node:path';
import sharp from 'sharp';
import { expect } from 'vitest';
import type { TestServer } from '../../helpers/server.js';
import { fixture, postMultipart } from '../../helpers/upload.js';
import { filesUnder } from '../../helpers/files.js';
import { loginHeaders } from '../../helpers/users.js';
import type { OrderMetadata as OrderBody } from '../../../src/modules/custom-orders/present.js';

export const PATH_JPG = fixture('path_2560x1600_olympus_exif.jpg');
export const ROCKET_JPG = fixture('rocket_small_640x427.jpg');

export const ADMIN = { ADMIN_EMAIL: 'boss@example.com', ADMIN_PASSWORD: 'admin-password-123' };

export function loginAdmin(baseUrl: string): Promise<{ authorization: string }> {
  return loginHeaders(baseUrl, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
}

/** A smaller real photo (1280x800) for tests that need many quick uploads. */
export async function photo(width = 1280): Promise<Buffer> {
  return sharp(PATH_JPG).resize({ width }).jpeg({ quality: 85 }).toBuffer();
}

export interface Part {
  field: string;
  filename?: string;
  data: Buffer | string;
  type?: string;
}

export function filePart(data: Buffer, filename = 'pet.jpg', type = 'image/jpeg'): Part {
  return { field: 'files', filename, data, type };
}

export function upload(baseUrl: string, headers: Record<string, string>, parts: Part[]): Promise<Response> {
  return postMultipart(`${baseUrl}/api/images/upload`, parts, headers);
}

/** An order as the server shows it (`order_metadata`). */
export type { OrderBody };

export interface UploadBody {
  success: true;
  message: string;
  order_id: string;
  files_uploaded: number;
  order_metadata: OrderBody;
}

/** Uploads and insists on 201. */
export async function createOrder(baseUrl: string, headers: Record<string, string>, parts: Part[]): Promise<OrderBody> {
  const res = await upload(baseUrl, headers, parts);
  const text = await res.text();
  if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${text}`);
  return (JSON.parse(text) as UploadBody).order_metadata;
}

export { filesUnder };

/** No order row, no file row, no order blob, no temp file; the server still healthy. */
export async function expectNothingStored(server: TestServer): Promise<void> {
  expect(await server.ctx.db.kysely.selectFrom('custom_orders').select('order_id').execute()).toEqual([]);
  expect(await server.ctx.db.kysely.selectFrom('custom_order_files').select('file_id').execute()).toEqual([]);
  expect(await filesUnder(path.join(server.dataDir, 'blobs', 'orders'))).toEqual([]);
  expect(await filesUnder(path.join(server.dataDir, 'tmp'))).toEqual([]);
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
}

export { expectProblem } from '../../helpers/problem.js';

export { pngBomb } from '../../helpers/png.js';
