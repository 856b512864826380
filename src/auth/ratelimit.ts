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
import { closeRedis, failFastRedis, watchRedisConnection } from '../platform/redis.js';

export type RateLimitClass = 'auth' | 'upload' | 'default' | 'none';

/** Where the counters live in Redis, under REDIS_PREFIX. */
export function rateLimitNamespace(redisPrefix: string): string {
  return `${redisPrefix}:ratelimit:`;
}

/** Failed counter updates are logged at most this often. */
const REPORT_EVERY_MS = 10_000;

export function rateLimitClassOf(request: FastifyRequest): RateLimitClass {
  const declared = request.routeOptions.config.rateLimitClass;
  if (declared) return declared;
  const url = request.routeOptions.url ?? '';
  if (url.startsWith('/auth/')) return 'auth';
  return 'default';
}

/** Counter keys name a caller by address (`ip:…`, IPv6 per /64)… */
const addressOf = (request: FastifyRequest): string => `ip:${rateLimit.normalizeIP(request.ip)}`;
/** …or, when signed in, by user (`user:…`). */
const callerOf = (request: FastifyRequest): string => (request.principal ? `user:${request.principal.userId}` : addressOf(request));

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
    // Fail fast, so that skipOnError lets the request through at once rather than after a wait.
    redis = await failFastRedis(ctx.config.redisUrl);
    watchRedisConnection(redis, ctx.log, 'rate limits');
    const client = redis;
    app.addHook('onClose', () => closeRedis(client));
  }

  await app.register(rateLimit, {
    global: true,
    timeWindow: 60_000,
    allowList: (request) => perMinute[rateLimitClassOf(request)] === 0,
    max: (request) => perMinute[rateLimitClassOf(request)],
    keyGenerator: (request) => {
      const cls = rateLimitClassOf(request);
      return `${cls}:${cls === 'auth' ? addressOf(request) : callerOf(request)}`;
    },
    redis,
    nameSpace: rateLimitNamespace(ctx.config.redisPrefix),
    // A Redis outage must not take the whole API down with it: the request is let through, the failure logged.
    skipOnError: true,
    errorResponseBuilder: (_request, context) => new TooManyRequests(Math.max(1, Math.ceil(context.ttl / 1000))),
  });
  if (redis) reportFailedCommands(redis, ctx);
}

/**
 * A limit on one kind of attempt inside a route, beside the route classes:
 * `what` counted per signed-in caller (per IP without one) against
 * `perMinute` (0: none), in the same store as the classes (Redis when
 * configured). The returned check counts one attempt and throws 429 when it
 * is over the limit.
 */
export function attemptLimit(app: FastifyInstance, what: string, perMinute: number): (request: FastifyRequest) => Promise<void> {
  if (perMinute === 0 || !app.hasDecorator('createRateLimit')) return async () => {};
  const count = app.createRateLimit({
    max: perMinute,
    timeWindow: 60_000,
    // The class limits' allow list (a class turned off) is not this limit's.
    allowList: () => false,
    keyGenerator: (request) => `${what}:${callerOf(request)}`,
  });
  return async (request) => {
    const result = await count(request);
    if (!result.isAllowed && result.isExceeded) throw new TooManyRequests(Math.max(1, result.ttlInSeconds));
  };
}

/**
 * skipOnError swallows a failed counter update without a word, and ioredis
 * emits 'error' only for the connection, not for a command that timed out or
 * found no connection. This wraps the store's two Lua commands (defined on
 * the client by @fastify/rate-limit's Redis store) to log such failures, at
 * most once every REPORT_EVERY_MS so an outage under load does not flood the log.
 * Their names are the store's, not a public API: a version that renames them
 * fails test/auth/ratelimit-redis-outage.test.ts, which reads the log.
 */
function reportFailedCommands(redis: Redis, ctx: Context): void {
  const commands = redis as unknown as Record<string, unknown>;
  let lastReport = 0;
  for (const name of ['rateLimit', 'rateLimitRead']) {
    const send = commands[name];
    if (typeof send !== 'function') continue;
    commands[name] = (...args: unknown[]): unknown => {
      const done = args.at(-1);
      if (typeof done !== 'function') return send.apply(redis, args);
      const report = (err: Error | null, result: unknown): void => {
        const now = Date.now();
        if (err && now - lastReport >= REPORT_EVERY_MS) {
          lastReport = now;
          ctx.log.warn({ err }, 'rate limit store (Redis) failed: request let through uncounted');
        }
        (done as (err: Error | null, result: unknown) => void)(err, result);
      };
      return send.apply(redis, [...args.slice(0, -1), report]);
    };
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Which rate limit applies to the route; `default` when unset (`auth` for /auth/* routes). */
    rateLimitClass?: RateLimitClass;
  }
}
