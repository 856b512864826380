/** Schemas shared by every module's routes (they feed validation and OpenAPI alike). */
import { Type } from '@sinclair/typebox';
import type { FastifySchema } from 'fastify';
import { carriesBody } from './content-types.js';

/** RFC 9457 problem details, as every error leaves the service. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
  },
  { additionalProperties: true, description: 'application/problem+json' },
);

/** Responses every authenticated route may give, for its `response` schema. */
export const authProblems = {
  401: ProblemSchema,
  404: ProblemSchema,
  422: ProblemSchema,
} as const;

/**
 * A success answer that is bytes of `mediaType`, not JSON, for a route's
 * `response` schema: the OpenAPI document then names the media type (a bare
 * schema would be listed as `application/json`). Fastify serialises no
 * Buffer, stream or string a route sends with its own type, so this shapes
 * the document only.
 */
export function bytesAnswer(mediaType: string, description: string, format: 'binary' | 'text' = 'binary') {
  const schema = format === 'binary' ? { type: 'string', format: 'binary' } : { type: 'string' };
  return { description, content: { [mediaType]: { schema } } } as const;
}

/** The success answers of a route served by `sendStoredImage`: whole, partial, or not modified. */
export const imageAnswers = {
  200: bytesAnswer('image/jpeg', 'The image'),
  206: bytesAnswer('image/jpeg', 'The requested byte range of the image'),
  304: Type.Null({ description: 'Not modified' }),
} as const;

/** OpenAPI `security` of a route that takes a bearer token or an API key (the schemes app.ts declares). */
export const SIGNED_IN: Array<Record<string, string[]>> = [{ bearer: [] }, { apiKey: [] }];

/** A JSON schema of type object: the fields of a multipart body (a plain type, so route options stay cheap to type-check). */
export type MultipartFields = Readonly<Record<string, unknown>>;

/** One uploaded file in a multipart body, for `multipartBody`. */
export const UploadedFile = Type.String({ format: 'binary', description: 'the file' });

/** The multipart body of a route that takes one file in the field `file`. */
export const singleFileField: MultipartFields = Type.Object({ file: UploadedFile });

/**
 * The OpenAPI document's picture of a route's multipart body (route
 * `config.multipartBody`). Only the document gets it: a multipart body is
 * read as a stream of parts by the route (never buffered into
 * `request.body`), so it is not a schema Fastify could validate. The same
 * for `config.rawBody`: a body the route reads as bytes (a signed webhook).
 */
export function withMultipartBody({ schema, url, route }: { schema: FastifySchema; url: string; route: { config?: unknown } }): { schema: FastifySchema; url: string } {
  const config = route.config as { multipartBody?: MultipartFields; rawBody?: MultipartFields } | undefined;
  const body = config?.multipartBody ?? config?.rawBody;
  return { schema: body ? { ...schema, body } : schema, url };
}

/** A route's OpenAPI `security` with no anonymous entry (`{}`): it needs a caller (auth/guard.ts enforces the same rule). */
export function needsCaller(security: ReadonlyArray<Record<string, unknown>> | undefined): boolean {
  return !!security?.length && !security.some((entry) => Object.keys(entry).length === 0);
}

/**
 * The failures any route of a kind can give, added to the OpenAPI document
 * where the route's own `response` does not list them: 401 on every route
 * (credentials that are sent but bad are refused everywhere, public routes
 * included: docs/auth.md), 403 when only admins may call it; 422 when it
 * validates a body, query or path; 400 (`invalid_json`,
 * `malformed_multipart`), 413 and 415 when it reads a JSON or multipart body,
 * and on every route of a method that carries a body (POST, PUT, PATCH,
 * DELETE) even when it declares none: Fastify parses a body that is sent
 * (broken JSON is 400, another type 415: content-types.ts); 429 when it is
 * rate limited; 500 on every route. They take the shape of the route's own
 * 401 (ai-edits' envelope); a status the route lists itself keeps its own.
 */
export function withCommonFailures({ schema, url, route }: { schema: FastifySchema; url: string; route: { config?: unknown; method?: string | string[] } }): { schema: FastifySchema; url: string } {
  const own = schema as FastifySchema & { hide?: boolean; security?: Array<Record<string, unknown>> };
  const response = own.response as Record<string, unknown> | undefined;
  if (!response || own.hide) return { schema, url };
  const config = (route.config ?? {}) as { rateLimitClass?: string; adminOnly?: boolean; multipartBody?: unknown };
  // A module with an error shape of its own (ai-edits' envelope) lists its 401 in it.
  const failure = response[401] ?? ProblemSchema;
  const common: Record<string, unknown> = {};
  common[401] = failure;
  if (config.adminOnly) common[403] = failure;
  if (own.body || own.querystring || own.params || config.multipartBody) common[422] = failure;
  // A body can be malformed (invalid JSON, a broken multipart stream), over its limit, or of another media type;
  // a route that declares none is sent one all the same, and Fastify parses it.
  if (own.body || config.multipartBody || (route.method !== undefined && carriesBody(route.method))) {
    common[400] = failure;
    common[413] = failure;
    common[415] = failure;
  }
  if (config.rateLimitClass !== 'none') common[429] = failure;
  // Any route may fail unexpectedly (a database gone mid-request): the problem hides the cause.
  common[500] = failure;
  // Any route may find the database busy: on SQLite, another process has held its write lock too long (db/index.ts).
  common[503] = failure;
  // Problems leave as application/problem+json, which is what the document names for them.
  const answers = Object.entries({ ...common, ...response }).map(([status, answer]) => [status, answer === ProblemSchema ? problemAnswer : answer]);
  const querystring = own.querystring === undefined ? {} : { querystring: defaultsOptional(own.querystring) };
  return { schema: { ...schema, ...querystring, response: Object.fromEntries(answers) }, url };
}

/**
 * A query parameter with a default may be left out (validation fills it in),
 * so the document does not list it as required, though the handler's type
 * does (`limit` of a list: 20 when not sent).
 */
function defaultsOptional(querystring: unknown): unknown {
  const object = querystring as { properties?: Record<string, { default?: unknown }>; required?: string[] };
  if (!object.properties || !object.required) return querystring;
  const properties = object.properties;
  return { ...object, required: object.required.filter((name) => properties[name]?.default === undefined) };
}

const problemAnswer = { description: 'A problem (RFC 9457)', content: { 'application/problem+json': { schema: ProblemSchema } } };

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The multipart fields this route reads, for the OpenAPI document (`withMultipartBody`). */
    multipartBody?: MultipartFields;
    /** The body a route reads as raw bytes, for the OpenAPI document only (`withMultipartBody`). */
    rawBody?: MultipartFields;
  }
}
