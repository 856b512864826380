/** Schemas shared by every module's routes (they feed validation and OpenAPI alike). */
import { Type } from '@sinclair/typebox';

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

/** A stored image served as bytes (ETag, 304, Range), for the `response` schema of every image route. */
export const BinaryJpeg = Type.String({ format: 'binary', description: 'image/jpeg bytes' });

/** The success answers of a route served by `sendStoredImage`: whole, partial, or not modified. */
export const imageAnswers = {
  200: BinaryJpeg,
  206: BinaryJpeg,
  304: Type.Null({ description: 'Not modified' }),
} as const;

/** OpenAPI `security` of a route that takes a bearer token or an API key (the schemes app.ts declares). */
export const SIGNED_IN: Array<Record<string, string[]>> = [{ bearer: [] }, { apiKey: [] }];
