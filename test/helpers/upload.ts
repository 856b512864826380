import { readFileSync } from 'node:fs';
import path from 'node:path';

export const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures');

export function fixture(name: string): Buffer {
  return readFileSync(path.join(FIXTURES, name));
}

/** POSTs `files` as multipart/form-data (field name → [filename, bytes, type]) with any text fields. */
export async function postMultipart(
  url: string,
  parts: Array<{ field: string; filename?: string; data: Buffer | string; type?: string }>,
  headers: Record<string, string> = {},
): Promise<Response> {
  const form = new FormData();
  for (const p of parts) {
    if (p.filename === undefined && typeof p.data === 'string') form.append(p.field, p.data);
    else form.append(p.field, new Blob([p.data], { type: p.type ?? 'application/octet-stream' }), p.filename ?? 'file');
  }
  return fetch(url, { method: 'POST', body: form, headers });
}
