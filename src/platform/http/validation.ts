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
import { isWellFormed } from '../text.js';

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
    route.httpPart === 'body'
      ? textChecked((exact as unknown as PartCompiler)(route) as Validate, route.schema)
      : textChecked(decimalOnly((coercing as unknown as PartCompiler)(route) as Validate), route.schema);
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
 * name, note or id has one. Nor may it hold a lone surrogate (a UTF-16 code
 * unit of U+D800 to U+DFFF without its pair, which JSON's `\ud800` can
 * write): such text is not Unicode, has no UTF-8 form, and was stored as
 * U+FFFD, so that different passwords became one. A part holding either is
 * refused like any other bad value, on every database alike.
 *
 * Only the values the route's schema declares are looked at (its
 * properties, as deep as the schema describes them); a field the route
 * ignores, or a query parameter it does not know, is not. Multipart text
 * fields, which are not validated by a schema, call `refuseBadText` themselves.
 */
function textChecked(validate: Validate, schema: unknown): Validate {
  return alsoRefusing(validate, () => null, (passed) => badText(passed, schema, '', 0));
}

export const NUL_MESSAGE = 'must not contain the NUL character (U+0000)';
export const SURROGATE_MESSAGE = 'must not contain a lone surrogate (U+D800 to U+DFFF without its pair)';

/** Why `text` is refused (NUL_MESSAGE or SURROGATE_MESSAGE), or null. */
function textFault(text: string): string | null {
  if (text.includes('\u0000')) return NUL_MESSAGE;
  return isWellFormed(text) ? null : SURROGATE_MESSAGE;
}

/** The refusal of `text` (a value or a key) found at `at`, or null. */
function refusalOf(text: string, at: string): Refusal | null {
  const fault = textFault(text);
  return fault === null ? null : { at, message: fault };
}

/** A schema's `patternProperties` patterns, compiled once rather than on every request. */
const compiledPatterns = new Map<string, RegExp>();
function patternOf(pattern: string): RegExp {
  let compiled = compiledPatterns.get(pattern);
  if (compiled === undefined) compiledPatterns.set(pattern, (compiled = new RegExp(pattern, 'u')));
  return compiled;
}


/** A JSON Schema that is an object (not `true`/`false`), as Ajv was given it. */
type SchemaObject = Record<string, unknown>;

const isSchemaObject = (schema: unknown): schema is SchemaObject => schema !== null && typeof schema === 'object' && !Array.isArray(schema);

/** The keywords by which a schema says what is inside a value; a schema with none of them takes its value whole. */
const STRUCTURE = ['properties', 'patternProperties', 'additionalProperties', 'items', 'prefixItems', 'additionalItems', 'allOf', 'anyOf', 'oneOf'];

/**
 * The first bad text (a NUL or a lone surrogate) among the values `schema`
 * declares in `value`, or null. A string the schema reaches is checked
 * whatever its declared type; in an object only the declared properties
 * (and keys and values that `patternProperties` or an `additionalProperties`
 * schema take in) are looked at, in a list the items. A value whose schema
 * says nothing of its inside (`{}`, or a `$ref` this does not follow) is
 * checked whole, keys and all: the route takes it as it is. Bodies nest;
 * 32 levels are plenty.
 */
function badText(value: unknown, schema: unknown, at: string, depth: number): Refusal | null {
  if (typeof value === 'string') return refusalOf(value, at);
  if (value === null || typeof value !== 'object' || depth > 32 || schema === false) return null;
  if (!isSchemaObject(schema) || '$ref' in schema || !STRUCTURE.some((k) => k in schema)) return badTextAnywhere(value, at, depth);
  for (const keyword of ['allOf', 'anyOf', 'oneOf']) {
    const branches = schema[keyword];
    if (!Array.isArray(branches)) continue;
    for (const branch of branches) {
      const found = badText(value, branch, at, depth + 1);
      if (found !== null) return found;
    }
  }
  return Array.isArray(value) ? badItem(value, schema, at, depth) : badProperty(value as Record<string, unknown>, schema, at, depth);
}

/** badText over the items of a list, each by the schema of its place (`items`, `prefixItems`, `additionalItems`). */
function badItem(list: unknown[], schema: SchemaObject, at: string, depth: number): Refusal | null {
  const tuple = Array.isArray(schema.prefixItems) ? schema.prefixItems : Array.isArray(schema.items) ? schema.items : null;
  const rest = tuple === null ? schema.items : Array.isArray(schema.prefixItems) ? schema.items : schema.additionalItems;
  for (const [i, item] of list.entries()) {
    const itemSchema: unknown = tuple !== null && i < tuple.length ? tuple[i] : rest;
    if (itemSchema === undefined) continue;
    const found = badText(item, itemSchema, `${at}/${i}`, depth + 1);
    if (found !== null) return found;
  }
  return null;
}

/** badText over the properties of an object the schema declares; any other is not looked at. */
function badProperty(object: Record<string, unknown>, schema: SchemaObject, at: string, depth: number): Refusal | null {
  const properties = isSchemaObject(schema.properties) ? schema.properties : {};
  const patterns = isSchemaObject(schema.patternProperties) ? Object.entries(schema.patternProperties) : [];
  for (const [key, item] of Object.entries(object)) {
    const where = `${at}/${key}`;
    if (Object.hasOwn(properties, key)) {
      const found = badText(item, properties[key], where, depth + 1);
      if (found !== null) return found;
      continue;
    }
    // A key the schema takes in by pattern or as an additional property is the client's text too.
    const matched = patterns.filter(([pattern]) => patternOf(pattern).test(key)).map(([, s]) => s);
    const taken = matched.length > 0 ? matched : isSchemaObject(schema.additionalProperties) ? [schema.additionalProperties] : [];
    if (taken.length === 0) continue;
    const badKey = refusalOf(key, where);
    if (badKey !== null) return badKey;
    for (const s of taken) {
      const found = badText(item, s, where, depth + 1);
      if (found !== null) return found;
    }
  }
  return null;
}

/** The first bad text (a key or a value) anywhere in `value`, or null: for a value its schema takes whole. */
function badTextAnywhere(value: unknown, at: string, depth: number): Refusal | null {
  if (typeof value === 'string') return refusalOf(value, at);
  if (value === null || typeof value !== 'object' || depth > 32) return null;
  for (const [key, item] of Object.entries(value)) {
    const badKey = refusalOf(key, `${at}/${key}`);
    if (badKey !== null) return badKey;
    const found = badTextAnywhere(item, `${at}/${key}`, depth + 1);
    if (found !== null) return found;
  }
  return null;
}

/**
 * The same rules for a text value that reaches a route outside a schema (a
 * multipart field): 422 naming `field`. busboy decodes such a field from
 * bytes, UTF-8 unless the part names another charset; UTF-8 cannot carry a
 * lone surrogate (its decoder puts U+FFFD), but a part sent as
 * `charset=utf-16le` can, and is refused here.
 */
export function refuseBadText(text: string, field: string): void {
  const fault = textFault(text);
  if (fault !== null) throw new ValidationFailed(`${field} ${fault}.`, [{ field, message: fault }]);
}

/** A multipart text field given twice: which value the client meant is unknown, so neither is kept (422 naming it). */
export function sentTwice(name: string): ValidationFailed {
  return new ValidationFailed(`The field "${name}" was sent twice; send it once.`, [{ field: `body.${name}`, message: 'was sent more than once' }]);
}
