/**
 * Operations: what the service is (`/`), whether it is well (`/health`),
 * how it is doing (`/metrics`), and what it offers (`/openapi.json`, `/redoc`;
 * Swagger UI at `/docs` is registered in app.ts, its page documented in docs.ts).
 * The document lists itself and its pages too: every route is in it.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Context } from '../../context.js';
import { VERSION } from '../../version.js';
import { SWAGGER_UI_PATH } from './docs.js';
import { checkHealth, HealthLog } from './health.js';
import { renderReference } from './reference.js';
import { bytesAnswer } from '../../platform/http/schemas.js';

const HealthAnswer = Type.Object({
  status: Type.Union([Type.Literal('healthy'), Type.Literal('unhealthy')]),
  timestamp: Type.String({ format: 'date-time' }),
  checks: Type.Record(Type.String(), Type.Object({ ok: Type.Boolean(), ms: Type.Number(), error: Type.Optional(Type.String()) })),
});

/** The outline of an OpenAPI 3 document; every other member passes through as it is. */
const OpenApiDocument = Type.Object(
  {
    openapi: Type.String(),
    info: Type.Object({ title: Type.String(), version: Type.String() }, { additionalProperties: true }),
    paths: Type.Record(Type.String(), Type.Unknown()),
  },
  { additionalProperties: true, description: 'The OpenAPI 3 document' },
);

export async function opsRoutes(app: FastifyInstance, ctx: Context): Promise<void> {
  app.get(
    '/',
    {
      schema: {
        tags: ['ops'],
        summary: 'What this service is and where its endpoints are',
        response: {
          200: Type.Object({
            service: Type.String(),
            version: Type.String(),
            description: Type.String(),
            endpoints: Type.Record(Type.String(), Type.String()),
          }),
        },
      },
    },
    async () => ({
      service: 'Kiln',
      version: VERSION,
      description: 'Self-hosted image service for shops: galleries, custom orders, product images by barcode, AI edits, products, orders, payments and 3D models from photos.',
      endpoints: {
        health: '/health',
        metrics: '/metrics',
        openapi: '/openapi.json',
        docs: SWAGGER_UI_PATH,
        redoc: '/redoc',
        auth: '/auth/login',
        users: '/users/me',
        galleries: '/projects/{project_id}/images',
        custom_orders: '/api/images/upload',
        product_images: '/api/v1/fetch-image',
        jobs: '/api/v1/jobs',
        ai_edits: '/api/v1/process/book',
        products: '/products',
        orders: '/orders',
        payments: '/payments/create-intent',
        pipeline: '/pipeline/upload',
        upload_page: '/upload',
      },
    }),
  );

  // Monitoring is never throttled, so its cost must not grow with its callers: the requests that
  // arrive while a health check or a metrics rendering runs share its result (one client pipelining
  // 100000 health checks held 20000 files open at once, each probe writing one).
  const healthLog = new HealthLog(ctx.log);
  const health = sharedWhileRunning(() => checkHealth(ctx, {}, healthLog));
  const metrics = sharedWhileRunning(() => ctx.metrics.registry.metrics());
  app.get(
    '/health',
    { config: { rateLimitClass: 'none' }, schema: { tags: ['ops'], summary: 'Database and blob store reachability', response: { 200: HealthAnswer, 503: HealthAnswer } } },
    async (_request, reply) => {
      const report = await health();
      // A probe's answer is of this moment: no cache may keep it (an error answer never carries a stored one's headers either).
      return reply.status(report.status === 'healthy' ? 200 : 503).header('cache-control', 'no-store').send(report);
    },
  );

  app.get('/metrics', { config: { rateLimitClass: 'none' }, schema: { tags: ['ops'], summary: 'Prometheus metrics', response: { 200: bytesAnswer('text/plain', 'Prometheus text exposition format', 'text') } } }, async (_request, reply) => {
    const body = await metrics();
    return reply.type(ctx.metrics.registry.contentType).send(body);
  });

  app.get('/openapi.json', { schema: { tags: ['ops'], summary: 'The OpenAPI 3 document', response: { 200: OpenApiDocument } } }, async () => app.swagger());

  app.get('/redoc', { schema: { tags: ['ops'], summary: 'API reference page', response: { 200: bytesAnswer('text/html', 'The API reference page', 'text') } } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(renderReference(app.swagger() as unknown as Parameters<typeof renderReference>[0])),
  );
}

/** `work`, run once for every caller that asks while it runs; a caller after it ended starts it anew. */
function sharedWhileRunning<T>(work: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | null = null;
  return () =>
    (running ??= work().finally(() => {
      running = null;
    }));
}
