import { STATUS_CODES } from 'node:http';
import { expect } from 'vitest';

/**
 * The answer is an RFC 9457 problem of `status` (and `code`, when given):
 * problem+json, its `status` repeated, a `type` URI made of its `code`, the
 * status's own `title`, and a `detail` that is a sentence and names no path
 * of the server.
 */
export async function expectProblem(res: Response, status: number, code?: string): Promise<{ code: string; detail: string }> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  const body = JSON.parse(text) as { type: string; title: string; detail: string; code: string; status: number };
  expect(body.status).toBe(status);
  expect(body.type).toBe(`urn:kiln:problem:${body.code}`);
  expect(body.title).toBe(STATUS_CODES[status]);
  expect(body.detail).toMatch(/\.$/);
  expect(body.detail).not.toMatch(/\/tmp|\/work|node_modules|at .*\.ts/);
  if (code) expect(body.code).toBe(code);
  return body;
}
