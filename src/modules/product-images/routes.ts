/**
 * HTTP routes of product images by barcode and of the job API
 * (docs/product-images.md). Parse, call the service, shape the answer.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { requireUser } from '../../auth/guard.js';
import type { Context } from '../../context.js';
import { sendStoredImage } from '../../images/serve.js';
import { emptyQueryValuesAbsent } from '../../platform/http/cursor.js';
import { HOURLY_MS, PeriodicSweep, runWhileOpen } from '../../platform/sweep.js';
import { authProblems, imageAnswers, ProblemSchema, SIGNED_IN } from '../../platform/http/schemas.js';
import {
  EanParams,
  FetchImageAnswer,
  FetchImageBody,
  JobListAnswer,
  JobListQuery,
  JobParams,
  JobSchema,
  ProductFileQuery,
  ProductImageAnswer,
} from './schemas.js';
import { productBlobKey, ProductImageService } from './service.js';


export async function productImageRoutes(parent: FastifyInstance, ctx: Context): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const products = new ProductImageService(ctx);
  runWhileOpen(app, new PeriodicSweep(ctx.log, 'pruning dead barcode leases', HOURLY_MS, () => products.pruneDeadLeases()));

  app.post(
    '/api/v1/fetch-image',
    {
      schema: {
        tags: ['product-images'],
        summary: 'Fetch a product picture by barcode in a background job',
        security: SIGNED_IN,
        body: FetchImageBody,
        response: { 202: FetchImageAnswer, ...authProblems },
      },
    },
    async (request, reply) => {
      const answer = await products.requestFetch(requireUser(request), request.body.ean_code, request.body.description);
      return reply.status(202).send(answer);
    },
  );

  app.get(
    '/api/v1/jobs/:job_id',
    {
      schema: { tags: ['jobs'], summary: 'One job (yours, or any for an admin)', security: SIGNED_IN, params: JobParams, response: { 200: JobSchema, ...authProblems } },
    },
    async (request) => products.job(requireUser(request), request.params.job_id),
  );

  app.get(
    '/api/v1/jobs',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Your jobs (every job for an admin), newest first, a page at a time',
        security: SIGNED_IN,
        querystring: JobListQuery,
        response: { 200: JobListAnswer, ...authProblems },
      },
      // `?status=&type=&limit=&cursor=` as a form sends it: an empty value is a parameter not given.
      preValidation: emptyQueryValuesAbsent,
    },
    async (request) => products.jobs(requireUser(request), request.query),
  );

  app.get(
    '/api/v1/images/:ean_code',
    {
      schema: {
        tags: ['product-images'],
        summary: 'The stored picture of a barcode: product name, source and URLs of its sizes',
        security: SIGNED_IN,
        params: EanParams,
        response: { 200: ProductImageAnswer, ...authProblems },
      },
    },
    async (request) => {
      requireUser(request);
      return products.image(request.params.ean_code);
    },
  );

  app.get(
    '/api/v1/images/:ean_code/file',
    {
      schema: {
        tags: ['product-images'],
        summary: 'The picture itself in one size (default original); ETag, 304 and Range supported',
        security: SIGNED_IN,
        params: EanParams,
        querystring: ProductFileQuery,
        response: { ...imageAnswers, ...authProblems, 412: ProblemSchema, 416: ProblemSchema },
      },
    },
    async (request, reply) => {
      requireUser(request);
      const file = await products.file(request.params.ean_code);
      const size = request.query.size ?? 'original';
      const variant = file.variants[size];
      return sendStoredImage(request, reply, ctx.blobs, {
        key: productBlobKey(file.imageId, size),
        etag: variant.etag,
        bytes: variant.bytes,
        lastModified: file.fetchedAt,
        contentType: 'image/jpeg',
        // Readable by any signed-in user, so never by a shared cache; a day, since a barcode's picture is stored once.
        cacheControl: 'private, max-age=86400',
      });
    },
  );
}
