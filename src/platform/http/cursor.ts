/**
 * What every paged list route shares: the opaque `cursor` / `next_cursor`
 * (base64url JSON of where the next page starts; each listing keeps its own
 * payload shape) and the reading of its query string, where an empty value
 * (`?status=&limit=`, as a form or a URL template sends it) means the
 * parameter was not given. A cursor the listing did not make is a bad field
 * like any other: 422 `invalid_cursor` with `errors: [{field:
 * "querystring.cursor", …}]`.
 */
import type { FastifyRequest } from 'fastify';
import { ValidationFailed } from '../../errors.js';

/** The cursor a listing hands out for the page after `position`. */
export function encodeCursor(position: unknown): string {
  return Buffer.from(JSON.stringify(position)).toString('base64url');
}

function invalidCursor(): ValidationFailed {
  return new ValidationFailed('The cursor is not one this service gave out.', [{ field: 'querystring.cursor', message: 'is not a cursor this listing gave out' }], 'invalid_cursor');
}

/**
 * The position a cursor carries. `read` checks the decoded JSON against the
 * listing's own shape and returns the position, or undefined when it is not
 * one; anything that is not base64url JSON of that shape throws the 422.
 */
export function decodeCursor<T>(cursor: string, read: (value: unknown) => T | undefined): T {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalidCursor();
  }
  const position = read(value);
  if (position === undefined) throw invalidCursor();
  return position;
}

/** A time as Kiln stores it: `Date.toISOString()`, to the millisecond, in UTC. */
function isStoredTime(value: unknown): value is string {
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(value)) return false;
  const time = new Date(value);
  return !Number.isNaN(time.getTime()) && time.toISOString() === value;
}

/** An id as Kiln makes them (ids.ts: base64url), with room for longer ones. */
const ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * `read` for the usual position, `[created_at, id]`: a stored time and an
 * id, as encodePosition writes them. Anything else (`["not a date", "x"]`)
 * is not a cursor a listing gave out.
 */
export function timeAndId(value: unknown): [string, string] | undefined {
  if (!Array.isArray(value) || value.length !== 2) return undefined;
  const [time, id] = value as unknown[];
  return isStoredTime(time) && typeof id === 'string' && ID.test(id) ? [time, id] : undefined;
}

/** Where a page ordered by (created_at, id) stops: the last row's two values. */
export interface Position {
  createdAt: string;
  id: string;
}

/** The cursor of the page after `last`. */
export function encodePosition(last: Position): string {
  return encodeCursor([last.createdAt, last.id]);
}

/** The position an `encodePosition` cursor carries, or 422 `invalid_cursor`. */
export function decodePosition(cursor: string): Position {
  return decodeCursor(cursor, (value) => {
    const pair = timeAndId(value);
    return pair && { createdAt: pair[0], id: pair[1] };
  });
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
