/**
 * CORS for the origins of ALLOWED_ORIGINS (@fastify/cors): the options in
 * one place, and what they add to an answer to a request that sent no
 * Origin, for a hot path that answers such requests without Fastify.
 */
import type { FastifyCorsOptions } from '@fastify/cors';

/** Answer headers a page on an allowed origin may read besides the CORS-safelisted ones. */
const EXPOSED_HEADERS = ['ETag', 'Content-Length', 'Content-Range', 'Retry-After', 'X-Request-Id'];

export function corsOptions(origins: string[]): FastifyCorsOptions {
  return {
    origin: origins,
    credentials: true,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    exposedHeaders: EXPOSED_HEADERS,
  };
}

/** [name, value, …] that corsOptions makes @fastify/cors add to every answer, one to a request without an Origin included. */
export const CORS_HEADERS_WITHOUT_ORIGIN: readonly string[] = [
  'vary', 'Origin',
  'access-control-allow-credentials', 'true',
  'access-control-expose-headers', EXPOSED_HEADERS.join(', '),
];
