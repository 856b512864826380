/** Admin-only routes over other people's accounts (docs/auth.md, Admin). */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { requireAdmin } from '../../auth/guard.js';
import type { Context } from '../../context.js';
import { ProblemSchema } from '../../platform/http/schemas.js';
import * as admin from './admin.js';
import { AdminPatchBody, IdParams, SIGNED_IN, User, UserListQuery, UserPage } from './schemas.js';
import { emptyQueryValuesAbsent } from '../../platform/http/cursor.js';


export async function adminRoutes(parent: FastifyInstance, ctx: Context): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/admin/users',
    {
      preValidation: emptyQueryValuesAbsent,
      config: { adminOnly: true },
      schema: {
        tags: ['admin'],
        summary: 'List users, oldest first, a page at a time',
        security: SIGNED_IN,
        querystring: UserListQuery,
        response: { 200: UserPage, 401: ProblemSchema, 403: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request) => {
      requireAdmin(request);
      return admin.listUsers(ctx, request.query.limit ?? 50, request.query.cursor);
    },
  );

  app.patch(
    '/admin/users/:id',
    {
      config: { adminOnly: true },
      schema: {
        tags: ['admin'],
        summary: 'Deactivate, reactivate, promote or demote a user',
        security: SIGNED_IN,
        params: IdParams,
        body: AdminPatchBody,
        response: { 200: User, 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema, 409: ProblemSchema },
      },
    },
    async (request) => {
      const principal = requireAdmin(request);
      return admin.changeUser(ctx, request.params.id, request.body, principal);
    },
  );
}
