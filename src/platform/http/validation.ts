/**
 * How requests are validated against their route's schema. A query string,
 * path parameters and headers are text, so their values are coerced to the
 * schema's types (`?limit=10` is the integer 10; one value of a list is a
 * list of one). A JSON body already has types: a value of the wrong type is
 * a 422 naming the field, never converted (`{"is_admin": null}` read as
 * false would demote an admin).
 */
import AjvCompiler from '@fastify/ajv-compiler';
import { ValidationFailed } from '../../errors.js';

type BuildCompiler = AjvCompiler.BuildCompilerFromPool;
type Options = NonNullable<Parameters<BuildCompiler>[1]>;

/** Ajv's settings for every part; `coerceTypes` applies to all but the body. */
export const AJV_OPTIONS = { removeAdditional: false, coerceTypes: 'array', allErrors: true } as const;

const pool = AjvCompiler();

/** Fastify's `schemaController.compilersFactory.buildValidator`: one Ajv that coerces, one that does not, chosen by the part. */
export const buildValidator: BuildCompiler = (externalSchemas, options) => {
  const coercing = pool(externalSchemas, options);
  const exact = pool(externalSchemas, { ...options, customOptions: { ...options?.customOptions, coerceTypes: false } } as Options);
  // Fastify calls the compiler with the route's part ({ schema, httpPart, … }); the package's
  // type declares Ajv's own compile signature instead, so this one call is typed by hand.
  type PartCompiler = (route: { schema: unknown; httpPart?: string }) => unknown;
  const byPart: PartCompiler = (route) =>
    route.httpPart === 'body' ? nulFree((exact as unknown as PartCompiler)(route) as Validate) : nulFree(decimalOnly((coercing as unknown as PartCompiler)(route) as Validate));
  return byPart as unknown as ReturnType<BuildCompiler>;
};

/** A compiled Ajv validator, as Fastify calls it: true or false, with `errors` set on false. */
type Validate = ((data: unknown) => boolean) & { errors?: unknown[] | null };

/** Where (a JSON pointer into the part) and why a part that passed its schema is refused all the same. */
interface Refusal {
  at: string;
  message: string;
}

/**
 * `validate`, then `refuses` on a part that passed it; a refusal is reported
 * as Ajv reports a failure (the error handler names the field). `snapshot`
 * sees the part before `validate` runs: Ajv coerces query values in place.
 */
function alsoRefusing<S>(validate: Validate, snapshot: (data: unknown) => S, refuses: (passed: unknown, before: S) => Refusal | null): Validate {
  const checked: Validate = (data) => {
    const before = snapshot(data);
    if (!validate(data)) {
      checked.errors = validate.errors;
      return false;
    }
    const refusal = refuses(data, before);
    checked.errors = refusal === null ? null : [{ instancePath: refusal.at, schemaPath: '#', keyword: 'type', params: {}, message: refusal.message }];
    return refusal === null;
  };
  return checked;
}

/**
 * Ajv coerces any text JavaScript reads as a number: `Infinity` (or `1e309`)
 * passes `integer` and skips `minimum`/`maximum`, which Ajv checks only on
 * finite numbers, so `?limit=Infinity` would reach the database; `0x10`,
 * `1e1` and ` 12` would be read as 16, 10 and 12. No query, path or header
 * value of Kiln's is written any other way than in decimal digits, so a
 * coerced value that was not is refused like any other bad value.
 */
function decimalOnly(validate: Validate): Validate {
  return alsoRefusing(validate, textsOf, (passed, texts) => {
    const at = texts === null ? null : notWrittenInDecimal(passed as Record<string, unknown>, texts);
    return at === null ? null : { at, message: NOT_DECIMAL };
  });
}

const NOT_DECIMAL = 'must be a finite number in decimal digits';

/** A number as a person writes one in a URL: optional minus, digits, optional decimal part. */
const DECIMAL = /^-?\d+(\.\d+)?$/;

/** The text values of a shallow part (a value or a list of values per name) before Ajv coerces them in place. */
function textsOf(data: unknown): Map<string, unknown> | null {
  if (data === null || typeof data !== 'object') return null;
  const texts = new Map<string, unknown>();
  for (const [key, value] of Object.entries(data)) {
    if (typeof value === 'string' || Array.isArray(value)) texts.set(key, Array.isArray(value) ? [...value] : value);
  }
  return texts;
}

/** The JSON pointer of the first value Ajv made a number of from text that is not DECIMAL, or null. */
function notWrittenInDecimal(data: Record<string, unknown>, texts: Map<string, unknown>): string | null {
  for (const [key, text] of texts) {
    const now = data[key];
    if (Array.isArray(now)) {
      // A list, or one value made a list of one ('array' coercion).
      const was = Array.isArray(text) ? text : [text];
      const i = now.findIndex((item, j) => typeof item === 'number' && typeof was[j] === 'string' && !DECIMAL.test(was[j] as string));
      if (i >= 0) return `/${key}/${i}`;
    } else if (typeof now === 'number' && typeof text === 'string' && !DECIMAL.test(text)) {
      return `/${key}`;
    }
  }
  return null;
}

/**
 * No text Kiln keeps or looks up may hold the NUL character: PostgreSQL's
 * text cannot store it (a query with one fails, which was a 500), and no
 * name, note or id has one. A part holding one is refused like any other
 * bad value, on every database alike. Multipart text fields, which are not
 * validated by a schema, call `refuseNul` themselves.
 */
function nulFree(validate: Validate): Validate {
  return alsoRefusing(validate, () => null, (passed) => {
    const at = withNul(passed, '', 0);
    return at === null ? null : { at, message: NUL_MESSAGE };
  });
}

export const NUL_MESSAGE = 'must not contain the NUL character (U+0000)';

/** The JSON pointer of the first string holding a NUL (a key or a value) in `value`, or null. Bodies nest; 32 levels are plenty. */
function withNul(value: unknown, at: string, depth: number): string | null {
  if (typeof value === 'string') return value.includes('\u0000') ? at : null;
  if (value === null || typeof value !== 'object' || depth > 32) return null;
  for (const [key, item] of Object.entries(value)) {
    if (key.includes('\u0000')) return `${at}/${key}`;
    const found = withNul(item, `${at}/${key}`, depth + 1);
    if (found !== null) return found;
  }
  return null;
}

/** The same rule for a text value that reaches a route outside a schema (a multipart field): 422 naming `field`. */
export function refuseNul(text: string, field: string): void {
  if (text.includes('\u0000')) throw new ValidationFailed(`${field} ${NUL_MESSAGE}.`, [{ field, message: NUL_MESSAGE }]);
}

/** A multipart text field given twice: which value the client meant is unknown, so neither is kept (422 naming it). */
export function sentTwice(name: string): ValidationFailed {
  return new ValidationFailed(`The field "${name}" was sent twice; send it once.`, [{ field: `body.${name}`, message: 'was sent more than once' }]);
}
