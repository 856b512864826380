/**
 * Builds the Fastify app from a Context: cross-cutting concerns (request
 * ids, security headers, CORS, multipart, problem+json errors, metrics,
 * OpenAPI) and then every module's routes. Nothing here knows a module's
 * rules; modules are plugins registered in `modules/index.ts`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import cors from '@fastify/cors';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { registerAuth } from './auth/guard.js';
import { registerRateLimits } from './auth/ratelimit.js';
import type { Context } from './context.js';
import { registerModules } from './modules/index.js';
import { jobRetention, registerJobHandlers } from './modules/jobs.js';
import { SWAGGER_UI_PATH, withSwaggerUiPage } from './modules/ops/docs.js';
import { bootstrapAdmin } from './modules/users/bootstrap.js';
import { withholdContinue } from './platform/http/continue.js';
import { clientErrorHandler, errorHandler, FailureFormats, frameworkError, notFoundHandler, answerAsteriskTarget, refuseBadHost, refuseConnect, refuseExpectation, type Refused } from './platform/http/errors.js';
import { BadRequest } from './errors.js';
import { KilnServer } from './platform/http/front-door.js';
import { HotPaths } from './platform/http/hot-path.js';
import { withCommonFailures, withMultipartBody } from './platform/http/schemas.js';
import { refuseUnreadMultipart } from './platform/http/content-types.js';
import { corsOptions } from './platform/http/cors.js';
import { CLIENT_CLOSED_REQUEST, RequestRecorder, UNMATCHED } from './platform/http/requests.js';
import { AJV_OPTIONS, buildValidator } from './platform/http/validation.js';
import { InFlight } from './platform/inflight.js';
import { runWhileOpen } from './platform/sweep.js';
import { lazyChildLogger } from './platform/log/index.js';
import { VERSION } from './version.js';

/**
 * Fastify's parser refuses `__proto__` and `constructor.prototype` keys (they
 * would poison objects built from the body) with the same error as broken
 * JSON. A body that is JSON all the same is told what is wrong with it.
 */
function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function forbiddenKey(): BadRequest {
  return new BadRequest('The body has a "__proto__" or "constructor": {"prototype"} key, which Kiln does not accept.', 'forbidden_key');
}

/** Node's server.timeout: no byte either way for 2 minutes ends a connection (nginx's send_timeout is 60 s). */
export const CONNECTION_IDLE_MS = 120_000;

export type App = FastifyInstance;

export async function buildApp(ctx: Context): Promise<App> {
  const recorder = new RequestRecorder(ctx.log, ctx.metrics);
  const hotPaths = new HotPaths(recorder);
  const newRequestId = (): string => recorder.newRequestId();
  // Requests refused before Fastify sees them, or that never parsed, get their log line and metrics too.
  const refused: Refused = (requestId, method, url, status, code) => {
    recorder.record(requestId, method, UNMATCHED, url, status, 0);
    if (status >= 400) ctx.metrics.httpErrors.inc({ route: UNMATCHED, code });
  };
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    // A few cached public reads are answered before Fastify routes them (platform/http/hot-path.ts),
    // on the socket when the front door read the request (platform/http/front-door.ts).
    serverFactory: (handler) => {
      const server = new KilnServer(
        hotPaths,
        (req, res) => refuseBadHost(req, res, newRequestId, refused) || answerAsteriskTarget(req, res, newRequestId, refused) || hotPaths.handle(req, res) || handler(req, res),
      );
      server.on('connect', (req: IncomingMessage, socket: Duplex) => refuseConnect(req, socket, newRequestId, refused));
      // A connection on which nothing moves for this long is closed: a client that stops reading an
      // answer (or stops sending its body) holds a socket and a file no longer than this.
      server.timeout = CONNECTION_IDLE_MS;
      server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => refuseExpectation(req, res, newRequestId, refused));
      // Expect: 100-continue is answered once the request has passed its checks (platform/http/continue.ts).
      server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
        withholdContinue(req, res);
        server.emit('request', req, res);
      });
      return server;
    },
    // A caller's X-Request-Id is kept when it is safe to log; otherwise we make one.
    requestIdHeader: false,
    genReqId: (req) => recorder.requestId(req),
    // Trust exactly TRUST_PROXY hops of X-Forwarded-For (0: the socket address is the client).
    trustProxy: (_address: string, hop: number) => hop < ctx.config.trustProxy,
    bodyLimit: 1024 * 1024,
    // Fastify's own two lines per request are replaced by the one line of the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (logger, bindings, options) => lazyChildLogger(logger as Logger, bindings, options) as FastifyBaseLogger,
    ajv: { customOptions: AJV_OPTIONS },
    // Failures met before routing leave as problem+json, or in the format of the path's routes (FailureFormats).
    frameworkErrors: (error, request, reply) => {
      frameworkError(error, reply, { ...recorder.securityHeaders, 'x-request-id': request.id });
      // No hook runs for these: their log line and request metrics are written here.
      recorder.record(request.id, request.method, UNMATCHED, request.url, reply.statusCode, reply.elapsedTime);
    },
    clientErrorHandler: clientErrorHandler(newRequestId, refused),
    schemaController: { compilersFactory: { buildValidator } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('ctx', ctx);
  app.decorate('hotPaths', hotPaths);
  app.decorate('failureFormats', new FailureFormats());
  const inflight = new InFlight();
  app.decorate('inflight', inflight);
  // Every route added from here on is tracked until its handler settles, so that a stop lets an
  // upload that is rendering commit or roll back before the process exits (main.ts).
  app.addHook('onRoute', (route) => {
    // Multipart is registered for every route; one that reads none refuses it as 415 (content-types.ts).
    refuseUnreadMultipart(route);
    const handler = route.handler;
    route.handler = function tracked(this: FastifyInstance, request, reply) {
      return inflight.track(handler.call(this, request, reply));
    } as typeof handler;
  });
  app.setErrorHandler(errorHandler);
  // An empty body sent as JSON is no body: a DELETE from a client that always sends the type works,
  // and a route that needs a body names it in its 422 (Fastify's own parser refuses it without a field).
  const parseJson = app.getDefaultJsonParser('error', 'error');
  // No route reads plain text: a JSON body sent as text/plain is 415, not a 422 about missing fields.
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body.toString(); // a string already: parseAs 'string'
    if (text === '') done(null, undefined);
    else parseJson(request, text, (err, value) => done(err && isJson(text) ? forbiddenKey() : err, value));
  });

  // Each request's reply, for the log line of one whose client goes away (onRequestAbort below gets no reply).
  const replies = new WeakMap<FastifyRequest, FastifyReply>();
  // Hot-path hooks take callbacks, not promises: they run on every request, image GETs included.
  app.addHook('onRequest', (request, reply, done) => {
    reply.headers(recorder.securityHeaders);
    reply.header('x-request-id', request.id);
    replies.set(request, reply);
    done();
  });
  // From the moment the server starts closing, an answer closes its connection: kept alive, it would hold
  // the shutdown up for the keep-alive timeout (the front door closes its own connections at close).
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    recorder.record(request.id, request.method, request.routeOptions.url ?? UNMATCHED, request.url, reply.statusCode, reply.elapsedTime);
    done();
  });
  // A request whose connection closed before its answer was complete (a client gone mid-upload or
  // mid-download, a connection cut at shutdown) gets no onResponse: its line says so, with 499 (nginx's
  // "client closed request") when no status had been sent.
  app.addHook('onRequestAbort', (request, done) => {
    const reply = replies.get(request);
    const status = reply?.raw.headersSent ? reply.statusCode : CLIENT_CLOSED_REQUEST;
    recorder.record(request.id, request.method, request.routeOptions.url ?? UNMATCHED, request.url, status, reply?.elapsedTime ?? 0, true);
    done();
  });

  if (ctx.config.allowedOrigins.length > 0) {
    // An OPTIONS without Origin or Access-Control-Request-Method is no preflight: it is answered as
    // without CORS (405 with Allow, or 404), where @fastify/cors would send a plain-text 400.
    app.addHook('onRequest', (request, reply, done) => {
      if (request.method === 'OPTIONS' && !(request.headers.origin && request.headers['access-control-request-method'])) {
        notFoundHandler(request, reply);
        return;
      }
      done();
    });
    await app.register(cors, corsOptions(ctx.config.allowedOrigins));
  }
  await app.register(multipart, {
    // A part's file name as the client sent it, path and all: custom orders show it as
    // `original_filename` "as received" (spec); no route builds a path from it.
    preservePath: true,
    limits: {
      fileSize: ctx.config.maxUploadSize,
      files: Math.max(ctx.config.maxFilesPerOrder, 1) + 1,
      fields: 20,
      fieldSize: 64 * 1024,
      parts: 64,
    },
  });

  await app.register(swagger, {
    transform: (route) => withCommonFailures({ ...withMultipartBody(withSwaggerUiPage(route)), route: route.route }),
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Kiln',
        version: VERSION,
        description: 'Self-hosted image service for shops: galleries, custom orders, product images by barcode, AI edits, products, orders, payments and 3D models from photos.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
    },
  });

  // Order matters: the guard's app-level onRequest hook resolves request.principal
  // before the rate limiter's route-level one keys on it, and the limiter covers
  // only routes added after it: Swagger UI's, every module's, and unknown paths.
  await registerAuth(app, ctx);
  await registerRateLimits(app, ctx);
  app.setNotFoundHandler(app.hasDecorator('rateLimit') ? { preHandler: app.rateLimit() } : {}, notFoundHandler);
  await app.register(swaggerUi, { routePrefix: SWAGGER_UI_PATH });
  await registerModules(app, ctx);
  // Job kinds exist wherever an app is built: `kiln serve`, and `kiln worker` which builds one without listening.
  registerJobHandlers(ctx);
  runWhileOpen(app, jobRetention(ctx));
  await bootstrapAdmin(ctx);
  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    ctx: Context;
    /** Where a module adds a hot path for a read it can answer from memory. */
    hotPaths: HotPaths;
    /** Route handlers still running (the onRoute hook in buildApp). */
    inflight: InFlight;
  }
}
