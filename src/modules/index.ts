/**
 * Every capability the user sees, registered in one place. A module is a
 * function (app, ctx) that adds its routes; add a line here to add one.
 */
import type { FastifyInstance } from 'fastify';
import type { Context } from '../context.js';
import { aiEditRoutes } from './ai-edits/routes.js';
import { customOrderRoutes } from './custom-orders/routes.js';
import { galleryRoutes } from './galleries/routes.js';
import { opsRoutes } from './ops/routes.js';
import { paymentRoutes } from './payments/routes.js';
import { pipelineRoutes } from './pipeline/routes.js';
import { productImageRoutes } from './product-images/routes.js';
import { shopRoutes } from './shop/routes.js';
import { userRoutes } from './users/routes.js';
import { webPages } from '../web/pages.js';

export async function registerModules(app: FastifyInstance, ctx: Context): Promise<void> {
  await opsRoutes(app, ctx);
  await userRoutes(app, ctx);
  await galleryRoutes(app, ctx);
  await aiEditRoutes(app, ctx);
  await customOrderRoutes(app, ctx);
  await productImageRoutes(app, ctx);
  await shopRoutes(app, ctx);
  await paymentRoutes(app, ctx);
  await pipelineRoutes(app, ctx);
  await webPages(app, ctx);
}
