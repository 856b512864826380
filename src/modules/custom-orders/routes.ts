/**
 * HTTP routes of custom orders (docs/custom-orders.md). Parse, call the
 * service, shape the answer in the Pet Planter service's `{success: true, …}` envelope;
 * the rules live in service.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Context } from '../../context.js';
import { Forbidden } from '../../errors.js';
import { requireAdmin, requireUser } from '../../auth/guard.js';
import { jpegVariantFile, sendStoredImage } from '../../images/serve.js';
import { Type } from '@sinclair/typebox';
import { toProblem } from '../../platform/http/errors.js';
import { imageAnswers, ProblemSchema, SIGNED_IN, UploadedFile, type MultipartFields } from '../../platform/http/schemas.js';
import { orderMetrics } from './metrics.js';
import { OrderService } from './service.js';
import {
  AdminListAnswer,
  AdminQuery,
  DeleteAnswer,
  FileParams,
  FileQuery,
  ListAnswer,
  OrderAnswer,
  OrderParams,
  StatusBody,
  UploadAnswer,
} from './schemas.js';
import { emptyQueryValuesAbsent } from '../../platform/http/cursor.js';

const TAGS = ['custom orders'];

function alteredLink(): Forbidden {
  return new Forbidden('This link is not valid.', 'invalid_signature');
}

/**
 * A signed link is both query parameters or neither; half of one is an
 * altered link. `expires` must read exactly as signedUrls writes it (unix
 * seconds in plain decimal): anything else (empty, a sign, a fraction, a
 * number too large to be exact, leading zeros) was altered, and fails as an
 * altered signature does, with 403 `invalid_signature`.
 */
function signedLink(query: FileQuery): { expires: number; sig: string } | undefined {
  if (query.expires === undefined && query.sig === undefined) return undefined;
  if (query.expires === undefined || query.sig === undefined) throw alteredLink();
  const expires = /^(0|[1-9][0-9]{0,15})$/.test(query.expires) ? Number(query.expires) : Number.NaN;
  if (!Number.isSafeInteger(expires)) throw alteredLink();
  return { expires, sig: query.sig };
}

/** A signed-link parameter given twice is an altered link too; without this it would fail the query schema (422). */
async function repeatedLinkParameter(request: FastifyRequest): Promise<void> {
  const query = request.query as Record<string, unknown> | null;
  if (Array.isArray(query?.expires) || Array.isArray(query?.sig)) throw alteredLink();
}

/**
 * Refusals of the upload route that are not about the upload: who may call
 * (401) and how often (429) are the auth layer's, counted in kiln_http_errors_total.
 */
const NOT_ABOUT_THE_UPLOAD: ReadonlySet<number> = new Set([401, 429]);

/** The multipart fields of POST /api/images/upload, for the OpenAPI document. */
const UPLOAD_FIELDS: MultipartFields = Type.Object({
  files: Type.Array(UploadedFile, { minItems: 1, description: 'the photos: the field repeated, 1 to MAX_FILES_PER_ORDER times' }),
  pet_name: Type.Optional(Type.String()),
  pet_type: Type.Optional(Type.String()),
  notes: Type.Optional(Type.String()),
});

export async function customOrderRoutes(parent: FastifyInstance, ctx: Context): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const orders = new OrderService(ctx);
  // Created now, so /metrics shows every series (orders by status included) before the first upload.
  const metrics = orderMetrics(ctx);

  app.post(
    '/api/images/upload',
    {
      config: {
        rateLimitClass: 'upload',
        multipartBody: UPLOAD_FIELDS,
      },
      schema: {
        tags: TAGS,
        summary: 'Upload 1 to MAX_FILES_PER_ORDER photos (repeated multipart field `files`) with pet_name, pet_type, notes: makes a custom order',
        security: SIGNED_IN,
        consumes: ['multipart/form-data'],
        response: { 201: UploadAnswer, 401: ProblemSchema, 413: ProblemSchema, 415: ProblemSchema, 422: ProblemSchema },
      },
      /**
       * Every refused upload is counted by reason here, whatever refused it: the
       * service (bad files, fields), the multipart plugin (not multipart, limits)
       * or Fastify before the handler (a body of another content type).
       */
      onError: async (_request, _reply, error) => {
        const { status, code } = toProblem(error);
        if (!NOT_ABOUT_THE_UPLOAD.has(status)) metrics.uploadsRejected.inc({ reason: code });
      },
    },
    async (request, reply) => {
      const principal = requireUser(request);
      // A refused upload's unread rest is drained by the error handler (platform/http/drain.ts).
      const order = await orders.upload(principal, request.parts());
      return reply.status(201).send({
        success: true as const,
        message: 'Images uploaded successfully',
        order_id: order.order_id,
        files_uploaded: order.files.length,
        order_metadata: order,
      });
    },
  );

  app.get(
    '/api/images/orders',
    {
      schema: { tags: TAGS, summary: 'Your custom orders, newest first', security: SIGNED_IN, response: { 200: ListAnswer, 401: ProblemSchema } },
    },
    async (request) => {
      const list = await orders.list(requireUser(request));
      return { success: true as const, orders: list, count: list.length };
    },
  );

  app.get(
    '/api/images/orders/:order_id',
    {
      schema: {
        tags: TAGS,
        summary: 'One of your custom orders',
        security: SIGNED_IN,
        params: OrderParams,
        response: { 200: OrderAnswer, 401: ProblemSchema, 404: ProblemSchema },
      },
    },
    async (request) => ({ success: true as const, order: await orders.get(requireUser(request), request.params.order_id) }),
  );

  app.delete(
    '/api/images/orders/:order_id',
    {
      schema: {
        tags: TAGS,
        summary: 'Delete an order and its photos (only while pending or cancelled)',
        security: SIGNED_IN,
        params: OrderParams,
        response: { 200: DeleteAnswer, 401: ProblemSchema, 404: ProblemSchema, 409: ProblemSchema },
      },
    },
    async (request) => {
      await orders.remove(requireUser(request), request.params.order_id);
      return { success: true as const, message: 'Order deleted successfully', order_id: request.params.order_id };
    },
  );

  app.get(
    '/api/images/orders/:order_id/files/:file_id',
    {
      preValidation: repeatedLinkParameter,
      schema: {
        tags: TAGS,
        summary: 'One photo of an order in one size: with a signed link from the order, or as its owner or an admin',
        security: [...SIGNED_IN, {}],
        params: FileParams,
        querystring: FileQuery,
        response: {
          ...imageAnswers,
          401: ProblemSchema,
          403: ProblemSchema,
          404: ProblemSchema,
          412: ProblemSchema, 416: ProblemSchema,
          422: ProblemSchema,
        },
      },
    },
    async (request, reply) => {
      const { order_id, file_id } = request.params;
      const size = request.query.size ?? 'original';
      const file = await orders.photoFile(request.principal, order_id, file_id, size, signedLink(request.query));
      // Private photos: no shared cache may keep them; the browser may, they never change.
      return sendStoredImage(request, reply, ctx.blobs, jpegVariantFile(file.key, file.variant, file.createdAt, 'private, max-age=3600, immutable'));
    },
  );

  app.put(
    '/api/images/orders/:order_id/status',
    {
      config: { adminOnly: true },
      schema: {
        tags: TAGS,
        summary: 'Move an order along its lifecycle (admin)',
        security: SIGNED_IN,
        params: OrderParams,
        body: StatusBody,
        response: { 200: OrderAnswer, 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema, 409: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request) => ({
      success: true as const,
      order: await orders.setStatus(requireAdmin(request), request.params.order_id, request.body.status),
    }),
  );

  app.get(
    '/admin/orders',
    {
      preValidation: emptyQueryValuesAbsent,
      config: { adminOnly: true },
      schema: {
        tags: TAGS,
        summary: 'Every customer\'s custom orders, newest first (admin); page with next_cursor',
        security: SIGNED_IN,
        querystring: AdminQuery,
        response: { 200: AdminListAnswer, 401: ProblemSchema, 403: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request) => {
      requireAdmin(request);
      const { status, limit, cursor } = request.query;
      return { success: true as const, ...(await orders.adminPage({ status, limit, cursor })) };
    },
  );
}
