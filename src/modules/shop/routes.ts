/**
 * HTTP routes of the shop's products and orders (docs/shop.md). Parse, call
 * the service, shape the answer: the rules live in products.ts and orders.ts.
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Context } from '../../context.js';
import { requireAdmin, requireUser } from '../../auth/guard.js';
import { jpegVariantFile, sendStoredImage } from '../../images/serve.js';
import { emptyQueryValuesAbsent } from '../../platform/http/cursor.js';
import { receiveOneFile } from '../../platform/http/one-file.js';
import { authProblems, imageAnswers, ProblemSchema, SIGNED_IN, singleFileField } from '../../platform/http/schemas.js';
import { PaymentService } from '../payments/service.js';
import { UnpaidOrderExpiry } from './expiry.js';
import { runWhileOpen } from '../../platform/sweep.js';
import { OrderService } from './orders.js';
import { ProductService } from './products.js';
import {
  EanBody,
  EanJobAnswer,
  ImageSizeQuery,
  Order,
  OrderBody,
  OrderListQuery,
  OrderPage,
  OrderParams,
  Product,
  ProductBody,
  ProductChanges,
  ProductImageAnswer,
  ProductImageParams,
  ProductListQuery,
  ProductPage,
  ProductParams,
  StatusBody,
} from './schemas.js';

/** Product pictures never change once stored; who may see them can (a product made inactive), so shared caches keep them briefly. */
const PICTURE_CACHE = 'public, max-age=300';
/** An inactive product's picture is the admins' alone: no shared cache may keep it for anyone else. */
const PRIVATE_PICTURE_CACHE = 'private, max-age=300';

const adminProblems = { ...authProblems, 403: ProblemSchema } as const;

export async function shopRoutes(parent: FastifyInstance, ctx: Context): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const products = new ProductService(ctx);
  const payments = new PaymentService(ctx);
  const orders = new OrderService(ctx, (orderId) => payments.releaseCancelledOrder(orderId));
  if (ctx.config.orderHoldMinutes > 0) {
    runWhileOpen(app, new UnpaidOrderExpiry(ctx, orders, payments));
  }

  app.get(
    '/products',
    {
      preValidation: emptyQueryValuesAbsent,
      schema: {
        tags: ['products'],
        summary: 'Products, newest first: active ones (admins see all); filter by category and text; page with next_cursor',
        querystring: ProductListQuery,
        response: { 200: ProductPage, 422: ProblemSchema },
      },
    },
    async (request) => products.list(request.principal, request.query),
  );

  app.get(
    '/products/:product_id',
    { schema: { tags: ['products'], summary: 'One product (an inactive one: admins only)', params: ProductParams, response: { 200: Product, 404: ProblemSchema } } },
    async (request) => products.get(request.principal, request.params.product_id),
  );

  app.post(
    '/products',
    {
      config: { adminOnly: true },
      schema: { tags: ['products'], summary: 'Create a product (admin)', security: SIGNED_IN, body: ProductBody, response: { 201: Product, ...adminProblems } },
    },
    async (request, reply) => {
      requireAdmin(request);
      return reply.status(201).send(await products.create(request.body));
    },
  );

  app.put(
    '/products/:product_id',
    {
      config: { adminOnly: true },
      schema: {
        tags: ['products'],
        summary: 'Change the fields given (admin); a new currency needs its price',
        security: SIGNED_IN,
        params: ProductParams,
        body: ProductChanges,
        response: { 200: Product, ...adminProblems },
      },
    },
    async (request) => {
      requireAdmin(request);
      return products.update(request.params.product_id, request.body);
    },
  );

  app.delete(
    '/products/:product_id',
    {
      config: { adminOnly: true },
      schema: {
        tags: ['products'],
        summary: 'Delete a product (admin); one that orders refer to is made inactive instead',
        security: SIGNED_IN,
        params: ProductParams,
        response: { 204: { type: 'null' }, ...adminProblems },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
      await products.remove(request.params.product_id);
      return reply.status(204).send();
    },
  );

  app.post(
    '/products/:product_id/images',
    {
      config: { adminOnly: true, rateLimitClass: 'upload', multipartBody: singleFileField },
      schema: {
        tags: ['products'],
        summary: 'Add a picture (multipart field `file`, admin), stored in the gallery sizes',
        security: SIGNED_IN,
        consumes: ['multipart/form-data'],
        params: ProductParams,
        response: { 201: ProductImageAnswer, ...adminProblems, 413: ProblemSchema, 415: ProblemSchema },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
      return reply.status(201).send(await products.addImage(request.params.product_id, receiveOneFile(request, 'file')));
    },
  );

  app.post(
    '/products/:product_id/images/from-ean',
    {
      config: { adminOnly: true },
      schema: {
        tags: ['products'],
        summary: 'Fetch the barcode\'s picture in an ean_fetch job (admin); it is attached when the job completes',
        security: SIGNED_IN,
        params: ProductParams,
        body: EanBody,
        response: { 202: EanJobAnswer, ...adminProblems },
      },
    },
    async (request, reply) => {
      const principal = requireAdmin(request);
      return reply.status(202).send(await products.addImageFromEan(principal, request.params.product_id, request.body.ean_code));
    },
  );

  app.get(
    '/products/:product_id/images/:image_id',
    {
      schema: {
        tags: ['products'],
        summary: 'One picture of a product in one size (default original); ETag, 304 and Range supported',
        params: ProductImageParams,
        querystring: ImageSizeQuery,
        response: { ...imageAnswers, 404: ProblemSchema, 412: ProblemSchema, 416: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request, reply) => {
      const { product_id, image_id } = request.params;
      const file = await products.imageFile(request.principal, product_id, image_id, request.query.size ?? 'original');
      return sendStoredImage(request, reply, ctx.blobs, jpegVariantFile(file.key, file.variant, file.createdAt, file.public ? PICTURE_CACHE : PRIVATE_PICTURE_CACHE));
    },
  );

  app.post(
    '/orders',
    {
      schema: {
        tags: ['orders'],
        summary: 'Order products: priced by the server, stock reserved; 409 out_of_stock when there is not enough',
        security: SIGNED_IN,
        body: OrderBody,
        response: { 201: Order, ...authProblems, 409: ProblemSchema },
      },
    },
    async (request, reply) => reply.status(201).send(await orders.create(requireUser(request), request.body)),
  );

  app.get(
    '/orders',
    {
      preValidation: emptyQueryValuesAbsent,
      schema: {
        tags: ['orders'],
        summary: 'Your orders, newest first; admins add ?all=true for everyone\'s',
        security: SIGNED_IN,
        querystring: OrderListQuery,
        response: { 200: OrderPage, ...adminProblems },
      },
    },
    async (request) => orders.list(requireUser(request), request.query),
  );

  app.get(
    '/orders/:order_id',
    {
      schema: { tags: ['orders'], summary: 'One order (its buyer or an admin)', security: SIGNED_IN, params: OrderParams, response: { 200: Order, ...authProblems } },
    },
    async (request) => orders.get(requireUser(request), request.params.order_id),
  );

  app.put(
    '/orders/:order_id/status',
    {
      config: { adminOnly: true },
      schema: {
        tags: ['orders'],
        summary: 'Move an order on (admin): pending, confirmed, shipped, delivered; or cancelled before shipping (stock returned); other moves 409',
        security: SIGNED_IN,
        params: OrderParams,
        body: StatusBody,
        response: { 200: Order, ...adminProblems, 409: ProblemSchema },
      },
    },
    async (request) => {
      requireAdmin(request);
      return orders.setStatus(request.params.order_id, request.body.status);
    },
  );
}
