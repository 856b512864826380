/**
 * How requests are validated against their route's schema. A query string,
 * path parameters and headers are text, so their values are coerced to the
 * schema's types (`?limit=10` is the integer 10; one value of a list is a
 * list of one). A JSON body already has types: a value of the wrong type is
 * a 422 naming the field, never converted (`{"is_admin": null}` read as
 * false would demote an admin).
 */
import AjvCompiler from '@fastify/ajv-compiler';

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
    route.httpPart === 'body' ? (exact as unknown as PartCompiler)(route) : finiteOnly((coercing as unknown as PartCompiler)(route) as Validate);
  return byPart as unknown as ReturnType<BuildCompiler>;
};

/** A compiled Ajv validator, as Fastify calls it: true or false, with `errors` set on false. */
type Validate = ((data: unknown) => boolean) & { errors?: unknown[] | null };

/**
 * Ajv coerces the text `Infinity` (or `1e309`) to a number that passes
 * `integer` and skips `minimum`/`maximum`, which it checks only on finite
 * numbers: `?limit=Infinity` would reach the database. No query, path or
 * header value of Kiln's stands for an infinite number, so a coerced part
 * holding one is refused like any other bad value.
 */
function finiteOnly(validate: Validate): Validate {
  const checked: Validate = (data) => {
    if (!validate(data)) {
      checked.errors = validate.errors;
      return false;
    }
    const where = nonFinite(data, '', 0);
    checked.errors = where === null ? null : [{ instancePath: where, schemaPath: '#', keyword: 'type', params: {}, message: 'must be a finite number' }];
    return where === null;
  };
  return checked;
}

/** The JSON pointer of the first non-finite number in `value` (query, params and headers are shallow), or null. */
function nonFinite(value: unknown, at: string, depth: number): string | null {
  if (typeof value === 'number') return Number.isFinite(value) ? null : at;
  if (value === null || typeof value !== 'object' || depth > 2) return null;
  for (const [key, item] of Object.entries(value)) {
    const found = nonFinite(item, `${at}/${key}`, depth + 1);
    if (found !== null) return found;
  }
  return null;
}
