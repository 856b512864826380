/**
 * The answer envelope of the Pictoora API: every answer of the AI-edit
 * routes is `{success, code, message, data}`, with its numeric codes
 * beside a truthful HTTP status. Errors use it too, with the stable machine
 * code in `data.error`; they are classified, logged and counted by the same
 * `recordFailure` as the rest of Kiln, so a failure means the same thing
 * here as in problem+json.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { recordFailure, type Problem } from '../../platform/http/errors.js';

/** Pictoora's codes: x000 success, x001 failure, one family per route. */
export const CODES = {
  root: { ok: 1000, failed: 1001 },
  health: { ok: 1000, failed: 1001 },
  upload: { ok: 2000, failed: 2001 },
  initiate: { ok: 3000, failed: 3001 },
  book: { ok: 4000, failed: 4001 },
  status: { ok: 5000, failed: 5001 },
  cache: { ok: 6000, failed: 6001 },
} as const;

export function Envelope<T extends TSchema>(data: T, description?: string) {
  return Type.Object(
    { success: Type.Literal(true), code: Type.Integer(), message: Type.String(), data },
    description ? { description } : {},
  );
}

export const ErrorEnvelope = Type.Object(
  {
    success: Type.Literal(false),
    code: Type.Integer({ description: 'x001 of the route' }),
    message: Type.String({ description: 'A human sentence' }),
    data: Type.Object({
      error: Type.String({ description: 'Stable machine code, e.g. file_too_large' }),
      errors: Type.Optional(Type.Array(Type.Object({ field: Type.String(), message: Type.String() }))),
    }),
  },
  { description: 'Failure, in the envelope (not problem+json)' },
);

/** Response schemas of the failures every authenticated envelope route may give. */
export const envelopeErrors = { 401: ErrorEnvelope, 404: ErrorEnvelope, 422: ErrorEnvelope, 429: ErrorEnvelope, 500: ErrorEnvelope } as const;

export function sendOk(reply: FastifyReply, status: number, code: number, message: string, data: unknown): FastifyReply {
  return reply.status(status).send({ success: true, code, message, data });
}

/**
 * The error handler of the AI-edit scope only: other /api/v1 routes (product
 * images, jobs) keep problem+json. The failure code comes from the route's
 * `config.envelopeFailure`. A request that matched no route never gets here:
 * one with a method an AI-edit path does not take (405), or a path part too
 * long to route (414), gets the envelope from the app's handlers through
 * FailureFormats (routes.ts registers the paths); a path of no route is
 * the app's 404, in problem+json.
 */
export async function envelopeErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const p = await recordFailure(error, request, reply);
  return sendEnvelopeFailure(reply, request.routeOptions.config.envelopeFailure ?? CODES.root.failed, p);
}

/** A failure in the envelope, with the route's x001 `code` and the problem's machine code in `data.error`. */
export function sendEnvelopeFailure(reply: FastifyReply, code: number, p: Problem): FastifyReply {
  const data: { error: string; errors?: unknown } = { error: p.code };
  if (Array.isArray(p.errors)) data.errors = p.errors;
  return reply.status(p.status).type('application/json; charset=utf-8').send({ success: false, code, message: p.detail, data });
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The Pictoora failure code (x001) an AI-edit route answers errors with. */
    envelopeFailure?: number;
  }
}
