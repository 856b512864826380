/**
 * The guard every module uses. Owns who is calling: `registerAuth` resolves
 * credentials once per request into `request.principal`; `requireUser` and
 * `requireAdmin` are what a route calls to insist on one.
 *
 * Bad credentials are recorded in onRequest and rejected in preParsing, so
 * the rate limiter (a route-level onRequest hook, which runs after this
 * app-level one) still counts them, keyed by the caller's address. A missing
 * caller on a route that needs one (its OpenAPI `security`, or `adminOnly`)
 * is rejected there too, before validation: the handlers' `requireUser` and
 * `requireAdmin` then only hand over the principal.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Context } from '../context.js';
import { Forbidden, Unauthorized } from '../errors.js';
import { needsCaller } from '../platform/http/schemas.js';
import { resolvePrincipal } from './credentials.js';
import type { Principal } from './principal.js';
import { createAccessTokenVerifier } from './tokens.js';

export async function registerAuth(app: FastifyInstance, ctx: Context): Promise<void> {
  const verify = createAccessTokenVerifier(ctx);
  const failures = new WeakMap<FastifyRequest, Unauthorized>();

  app.decorateRequest('principal', null);
  app.addHook('onRequest', (request, _reply, done) => {
    // Most reads (images in <img> tags) carry no credentials: settle those without a promise.
    if (request.headers.authorization === undefined && request.headers['x-api-key'] === undefined) {
      done();
      return;
    }
    resolvePrincipal(ctx, verify, request.headers).then(
      (principal) => {
        request.principal = principal;
        done();
      },
      (err: unknown) => {
        if (!(err instanceof Unauthorized)) {
          done(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        failures.set(request, err);
        done();
      },
    );
  });
  // A route whose OpenAPI `security` has no anonymous entry ({}) needs a caller; `adminOnly`, an admin.
  app.addHook('onRoute', (route) => {
    if (needsCaller((route.schema as { security?: Array<Record<string, unknown>> } | undefined)?.security)) route.config = { ...route.config, signInRequired: true };
  });
  // Before the body is read or anything validated: a caller who may not use the route learns only
  // that (401, 403), not which of its fields would be wrong.
  app.addHook('preParsing', (request, _reply, payload, done) => {
    const config = request.routeOptions.config;
    const failure = failures.get(request);
    if (failure && !config.badCredentialsIgnored) {
      done(failure);
      return;
    }
    try {
      if (config.adminOnly) requireAdmin(request);
      else if (config.signInRequired) requireUser(request);
    } catch (err) {
      done(err as Error);
      return;
    }
    done(null, payload);
  });
}

/** The caller, or 401 when the request carries no credentials. */
export function requireUser(request: FastifyRequest): Principal {
  if (!request.principal) throw new Unauthorized('Sign in: send a bearer token or an API key.', 'unauthorized');
  return request.principal;
}

/** The caller when an admin: 401 without credentials, 403 for everyone else. */
export function requireAdmin(request: FastifyRequest): Principal {
  const principal = requireUser(request);
  if (!principal.isAdmin) throw new Forbidden('Only admins may do this.', 'admin_required');
  return principal;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The route needs no caller and must work with credentials that no longer verify: bad ones
     * leave `request.principal` null instead of failing the request (logout with an expired token).
     */
    badCredentialsIgnored?: boolean;
    /** Only admins may use the route: 401 without credentials, 403 for anyone else, before its body is read. */
    adminOnly?: boolean;
    /** Set by registerAuth from the route's OpenAPI `security`: the route needs a caller (401 before its body is read). */
    signInRequired?: boolean;
  }
  interface FastifyRequest {
    /** Set by registerAuth for every request: null when no credentials were sent. */
    principal: Principal | null;
  }
}
