/**
 * Swagger UI's page in the OpenAPI document. @fastify/swagger-ui marks every
 * route it adds `hide: true` and has no option to show one, so the page is
 * described here and handed to @fastify/swagger by its `transform` (app.ts).
 * Swagger UI's own assets (`/docs/static/*`, `/docs/json`, ...) stay out:
 * they are parts of the page, not the API.
 */
import type { FastifySchema } from 'fastify';
import { bytesAnswer } from '../../platform/http/schemas.js';

/** Where Swagger UI is served. */
export const SWAGGER_UI_PATH = '/docs';

const swaggerUiPage: FastifySchema = {
  tags: ['ops'],
  summary: 'Swagger UI: the OpenAPI document, browsable',
  response: { 200: bytesAnswer('text/html', 'The Swagger UI page', 'text') },
};

/**
 * A route as @fastify/swagger's `transform` sees it: Swagger UI's page gets
 * its schema, every other route is left as it is. Fastify adds the page at
 * `/docs` and `/docs/` from one options object whose `url` ends as `/docs/`,
 * so that is the url seen here; it is documented at `/docs`, as it is linked.
 */
export function withSwaggerUiPage<T extends { schema: FastifySchema; url: string; route: { method: string | string[] } }>(route: T): T {
  const methods = typeof route.route.method === 'string' ? [route.route.method] : route.route.method;
  if (route.url !== `${SWAGGER_UI_PATH}/` || !methods.includes('GET')) return route;
  return { ...route, schema: swaggerUiPage, url: SWAGGER_UI_PATH };
}
