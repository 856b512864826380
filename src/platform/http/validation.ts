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
  const byPart: PartCompiler = (route) => ((route.httpPart === 'body' ? exact : coercing) as unknown as PartCompiler)(route);
  return byPart as unknown as ReturnType<BuildCompiler>;
};
