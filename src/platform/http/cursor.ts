/**
 * What every paged list route shares: the opaque `cursor` / `next_cursor`
 * (base64url JSON of where the next page starts: a creation time and an id,
 * as every listing pages by them) and the reading of its query string, where an empty value
 * (`?status=&limit=`, as a form or a URL template sends it) means the
 * parameter was not given. A cursor the listing did not make is a bad field
 * like any other: 422 `invalid_cursor` with `errors: [{field:
 * "querystring.cursor", …}]`.
 */
import type { FastifyRequest } from 'fastify';
import { ValidationFailed } from '../../errors.js';

function invalidCursor(): ValidationFailed {
  return new ValidationFailed('The cursor is not one this service gave out.', [{ field: 'querystring.cursor', message: 'is not a cursor this listing gave out' }], 'invalid_cursor');
}

/** A time as Kiln stores it: `Date.toISOString()`, to the millisecond, in UTC. */
function isStoredTime(value: unknown): value is string {
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(value)) return false;
  const time = new Date(value);
  return !Number.isNaN(time.getTime()) && time.toISOString() === value;
}

/** An id as Kiln makes them (ids.ts: base64url), with room for longer ones. */
const ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Where a page ordered by (created_at, id) stops: the last row's two values. */
export interface Position {
  createdAt: string;
  id: string;
}

/** The cursor of the page after `last`: base64url JSON of `[created_at, id]`. */
export function encodePosition(last: Position): string {
  return Buffer.from(JSON.stringify([last.createdAt, last.id])).toString('base64url');
}

/**
 * The position an `encodePosition` cursor carries. Anything else, base64url
 * JSON or not (`["not a date", "x"]`), is not a cursor a listing gave out:
 * 422 `invalid_cursor`.
 */
export function decodePosition(cursor: string): Position {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalidCursor();
  }
  if (!Array.isArray(value) || value.length !== 2) throw invalidCursor();
  const [createdAt, id] = value as unknown[];
  if (!isStoredTime(createdAt) || typeof id !== 'string' || !ID.test(id)) throw invalidCursor();
  return { createdAt, id };
}

/**
 * A list route's `preValidation` hook: query parameters sent empty are
 * dropped before the schema sees them, so they take their defaults exactly
 * as if they were absent.
 */
export async function emptyQueryValuesAbsent(request: FastifyRequest): Promise<void> {
  const query = request.query;
  if (typeof query !== 'object' || query === null) return;
  const values = query as Record<string, unknown>;
  for (const [name, value] of Object.entries(values)) {
    if (value === '') delete values[name];
  }
}
