/**
 * Accounts (docs/auth.md): registration, sessions (/auth/login, refresh,
 * logout), one's own account (/users/me), API keys (/auth/api-keys) and the
 * admin's user list (admin-routes.ts). Routes speak HTTP only; the rules
 * are in service.ts, sessions.ts, api-keys.ts and admin.ts.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { Type } from '@sinclair/typebox';
import { requireUser } from '../../auth/guard.js';
import { attemptLimit } from '../../auth/ratelimit.js';
import type { Context } from '../../context.js';
import { ProblemSchema } from '../../platform/http/schemas.js';
import { HOURLY_MS, PeriodicSweep, runWhileOpen } from '../../platform/sweep.js';
import { adminRoutes } from './admin-routes.js';
import * as keys from './api-keys.js';
import { ApiKey, ApiKeyBody, IdParams, LoginBody, NewApiKey, NoContent, RefreshBody, RegisterBody, SIGNED_IN, TokenPair, UpdateMeBody, User } from './schemas.js';
import * as accounts from './service.js';
import * as sessions from './sessions.js';

const AUTH = { rateLimitClass: 'auth' as const };

/** An answer that carries a token or a key: no cache may keep it (RFC 6749, section 5.1). */
function noStore(_request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  reply.header('cache-control', 'no-store');
  done();
}

export async function userRoutes(parent: FastifyInstance, ctx: Context): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  runWhileOpen(app, new PeriodicSweep(ctx.log, 'pruning ended sessions', HOURLY_MS, () => sessions.pruneEndedSessions(ctx)));

  app.post(
    '/auth/register',
    {
      // Needs no caller: a stale bearer token a client still sends along is ignored, as on login.
      config: { ...AUTH, badCredentialsIgnored: true },
      schema: { tags: ['auth'], summary: 'Create an account', body: RegisterBody, response: { 201: User, 409: ProblemSchema, 422: ProblemSchema } },
    },
    async (request, reply) => {
      // The three fields by name: a body is a schema's minimum, and may carry more (`isAdmin`).
      const { email, username, password } = request.body;
      return reply.status(201).send(await accounts.createUser(ctx, { email, username, password }));
    },
  );

  app.post(
    '/auth/login',
    {
      // The body is the credential: a stale bearer token a client still sends along is ignored, as on refresh and logout.
      config: { ...AUTH, badCredentialsIgnored: true },
      onRequest: noStore,
      schema: { tags: ['auth'], summary: 'Sign in with email and password', body: LoginBody, response: { 200: TokenPair, 401: ProblemSchema } },
    },
    async (request) => sessions.login(ctx, request.body.email, request.body.password, request.body.remember_me ?? false),
  );

  app.post(
    '/auth/refresh',
    {
      // A client refreshes because its access token ran out, and often sends that token along: ignored.
      config: { ...AUTH, badCredentialsIgnored: true },
      onRequest: noStore,
      schema: { tags: ['auth'], summary: 'Trade a refresh token for a new pair (the old one stops working)', body: RefreshBody, response: { 200: TokenPair, 401: ProblemSchema } },
    },
    async (request) => sessions.refresh(ctx, request.body.refresh_token),
  );

  app.post(
    '/auth/logout',
    {
      // The refresh token is the credential here; a client often logs out after its access token ran out.
      config: { ...AUTH, badCredentialsIgnored: true },
      schema: { tags: ['auth'], summary: 'End the session of a refresh token', body: RefreshBody, response: { 204: NoContent } },
    },
    async (request, reply) => {
      await sessions.logout(ctx, request.body.refresh_token);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/users/me',
    { schema: { tags: ['users'], summary: 'Your account', security: SIGNED_IN, response: { 200: User, 401: ProblemSchema, 404: ProblemSchema } } },
    async (request) => accounts.getMe(ctx, requireUser(request)),
  );

  // Checking current_password is signing in by another door: a stolen token or API key may not guess
  // the password at the default limit. RATE_LIMIT_AUTH checks a minute, per account.
  const passwordCheck = attemptLimit(app, 'current-password', ctx.config.rateLimitAuth);
  app.put(
    '/users/me',
    {
      schema: {
        tags: ['users'],
        summary: 'Change your username, email or password (email and password need current_password)',
        security: SIGNED_IN,
        body: UpdateMeBody,
        response: { 200: User, 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema, 409: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request) => {
      const principal = requireUser(request);
      if (request.body.current_password !== undefined) await passwordCheck(request);
      return accounts.updateMe(ctx, principal, request.body);
    },
  );

  app.delete(
    '/users/me',
    {
      schema: {
        tags: ['users'],
        summary: 'Delete your account with its sessions, API keys and uploads',
        security: SIGNED_IN,
        response: { 204: NoContent, 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema },
      },
    },
    async (request, reply) => {
      await accounts.deleteMe(ctx, requireUser(request));
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/auth/api-keys',
    {
      config: AUTH,
      onRequest: noStore,
      schema: {
        tags: ['auth'],
        summary: 'Create an API key (the key is shown only in this answer)',
        security: SIGNED_IN,
        body: ApiKeyBody,
        response: { 201: NewApiKey, 401: ProblemSchema, 403: ProblemSchema },
      },
    },
    async (request, reply) => {
      const { last_used_at: _unused, ...created } = await keys.createApiKey(ctx, requireUser(request), request.body.name);
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/auth/api-keys',
    { config: AUTH, schema: { tags: ['auth'], summary: 'Your API keys (never the keys themselves)', security: SIGNED_IN, response: { 200: Type.Array(ApiKey), 401: ProblemSchema, 403: ProblemSchema } } },
    async (request) => keys.listApiKeys(ctx, requireUser(request)),
  );

  app.delete(
    '/auth/api-keys/:id',
    {
      config: AUTH,
      schema: { tags: ['auth'], summary: 'Delete an API key; it stops working at once', security: SIGNED_IN, params: IdParams, response: { 204: NoContent, 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema } },
    },
    async (request, reply) => {
      await keys.deleteApiKey(ctx, requireUser(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  await adminRoutes(app, ctx);
}
