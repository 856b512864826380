/**
 * CORS for the origins of ALLOWED_ORIGINS (@fastify/cors): the options in
 * one place, and what they add to an answer to a request that sent no
 * Origin, for a hot path that answers such requests without Fastify.
 */
import type { FastifyCorsOptions } from '@fastify/cors';

/** Answer headers a page on an allowed origin may read besides the CORS-safelisted ones. */
const EXPOSED_HEADERS = ['ETag', 'Content-Length', 'Content-Range', 'Retry-After', 'X-Request-Id'];

/**
 * How long a browser may reuse a preflight's answer, in seconds. Every call
 * that sends credentials (Authorization, X-API-Key) or JSON is preceded by
 * one; without this header browsers reuse it for 5 s only, so a page that
 * polls a job's status paid a second round trip almost every time. Chromium
 * caps the value at 7200, Firefox at 86400.
 */
const PREFLIGHT_MAX_AGE_S = 600;

/**
 * Preflights (OPTIONS with Access-Control-Request-Method) are answered here,
 * before rate limiting: they are the browser's, not the page's, and counting
 * them would halve a browser client's budget, while a 429 to one reaches the
 * page as a CORS failure rather than as a 429.
 */
export function corsOptions(origins: string[]): FastifyCorsOptions {
  return {
    origin: origins,
    credentials: true,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    exposedHeaders: EXPOSED_HEADERS,
    maxAge: PREFLIGHT_MAX_AGE_S,
  };
}

/** [name, value, …] that corsOptions makes @fastify/cors add to every answer, one to a request without an Origin included. */
export const CORS_HEADERS_WITHOUT_ORIGIN: readonly string[] = [
  'vary', 'Origin',
  'access-control-allow-credentials', 'true',
  'access-control-expose-headers', EXPOSED_HEADERS.join(', '),
];
