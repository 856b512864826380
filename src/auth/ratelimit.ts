/**
 * Rate limits by route class, with @fastify/rate-limit: `auth` (every
 * /auth/* route) per client IP, `upload` per user, `default` per user or IP,
 * `none` never. Limits are requests per minute from the config; 0 turns a
 * class off. With REDIS_URL the counters live in Redis, shared by every
 * process. One counter per class and caller, across that class's routes.
 *
 * The plugin adds its check as a route-level onRequest hook, which runs
 * after registerAuth's app-level one, so `request.principal` is known here.
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import type { Context } from '../context.js';
import { TooManyRequests } from '../errors.js';

export type RateLimitClass = 'auth' | 'upload' | 'default' | 'none';

export const RATE_LIMIT_NAMESPACE = 'kiln:ratelimit:';

export function rateLimitClassOf(request: FastifyRequest): RateLimitClass {
  const declared = request.routeOptions.config.rateLimitClass;
  if (declared) return declared;
  const url = request.routeOptions.url ?? '';
  if (url.startsWith('/auth/')) return 'auth';
  return 'default';
}

export async function registerRateLimits(app: FastifyInstance, ctx: Context): Promise<void> {
  const perMinute: Record<RateLimitClass, number> = {
    auth: ctx.config.rateLimitAuth,
    upload: ctx.config.rateLimitUpload,
    default: ctx.config.rateLimitDefault,
    none: 0,
  };
  if (Object.values(perMinute).every((n) => n === 0)) return;

  let redis: Redis | undefined;
  if (ctx.config.redisUrl) {
    // ioredis is loaded only with REDIS_URL: a single-process deployment never needs it.
    const { Redis } = await import('ioredis');
    // Fail fast: a request waits at most one retry, then counts as allowed (skipOnError) rather than hanging.
    redis = new Redis(ctx.config.redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 2000 });
    redis.on('error', (err) => ctx.log.warn({ err }, 'rate limit store (Redis) error'));
    const client = redis;
    app.addHook('onClose', async () => {
      await client.quit();
    });
  }

  await app.register(rateLimit, {
    global: true,
    timeWindow: 60_000,
    allowList: (request) => perMinute[rateLimitClassOf(request)] === 0,
    max: (request) => perMinute[rateLimitClassOf(request)],
    keyGenerator: (request) => {
      const cls = rateLimitClassOf(request);
      const who = cls !== 'auth' && request.principal ? `user:${request.principal.userId}` : `ip:${rateLimit.normalizeIP(request.ip)}`;
      return `${cls}:${who}`;
    },
    redis,
    nameSpace: RATE_LIMIT_NAMESPACE,
    // A Redis outage must not take the whole API down with it; the error listener above reports it.
    skipOnError: true,
    errorResponseBuilder: (_request, context) => new TooManyRequests(Math.max(1, Math.ceil(context.ttl / 1000))),
  });
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Which rate limit applies to the route; `default` when unset (`auth` for /auth/* routes). */
    rateLimitClass?: RateLimitClass;
  }
}
