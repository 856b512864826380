/**
 * HTTP routes of AI edits (docs/ai-edits.md) under /api/v1, in
 * their own encapsulated scope: its error handler answers in the Pictoora
 * envelope, while the other /api/v1 routes (product images, jobs) keep
 * problem+json. Parse, call the service, shape the answer.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { requireAdmin, requireUser } from '../../auth/guard.js';
import type { Context } from '../../context.js';
import { ServiceUnavailable } from '../../errors.js';
import { jpegVariantFile, sendStoredImage } from '../../images/serve.js';
import { receiveOneFile } from '../../platform/http/one-file.js';
import { imageAnswers, SIGNED_IN, singleFileField } from '../../platform/http/schemas.js';
import { VERSION } from '../../version.js';
import { checkHealth } from '../ops/health.js';
import { CODES, envelopeErrorHandler, envelopeErrors, ErrorEnvelope, sendEnvelopeFailure, sendOk } from './envelope.js';
import { servableFile, uploadFile } from './files.js';
import { aiEditSweep } from './retention.js';
import { runWhileOpen } from '../../platform/sweep.js';
import {
  BookAnswer,
  BookBody,
  CacheAnswer,
  FileParams,
  FileQuery,
  HealthAnswer,
  InitiateAnswer,
  StatusAnswer,
  StatusBody,
  UploadAnswer,
  WelcomeAnswer,
} from './schemas.js';
import { bookProcess, initiateProcess, processStatus } from './service.js';

const TAGS = ['ai-edits'];

export async function aiEditRoutes(parent: FastifyInstance, ctx: Context): Promise<void> {
  // Every process that serves or runs jobs (kiln worker builds the app too) deletes what has expired (retention.ts).
  runWhileOpen(parent, aiEditSweep(ctx));

  await parent.register(
    async (scope) => {
      scope.setErrorHandler(envelopeErrorHandler);
      // A method a path of ours does not take, or a path too long to route, is answered in the envelope too.
      scope.addHook('onRoute', (route) => {
        const code = route.config?.envelopeFailure ?? CODES.root.failed;
        scope.failureFormats.add(route.url, (reply, p) => sendEnvelopeFailure(reply, code, p));
      });
      const app = scope.withTypeProvider<TypeBoxTypeProvider>();

      app.get(
        '/',
        { config: { envelopeFailure: CODES.root.failed }, schema: { tags: TAGS, summary: 'Welcome (no credentials needed)', response: { 200: WelcomeAnswer, 401: ErrorEnvelope, 429: ErrorEnvelope } } },
        async (_request, reply) => sendOk(reply, 200, CODES.root.ok, 'Welcome to the Kiln AI edit API', { service: 'Kiln', version: VERSION, docs: '/docs' }),
      );

      app.get(
        '/health',
        {
          config: { envelopeFailure: CODES.health.failed },
          schema: { tags: TAGS, summary: 'Database, blob store, job runner and model provider (no credentials needed)', response: { 200: HealthAnswer, 401: ErrorEnvelope, 429: ErrorEnvelope, 503: HealthAnswer } },
        },
        async (_request, reply) => {
          const report = await checkHealth(ctx, { job_runner: () => ctx.jobs.healthCheck() });
          // The provider is not called (that would cost money on every probe): configured or not is what we know.
          const configured = Boolean(ctx.config.openai.apiKey);
          const checks = { ...report.checks, model_provider: configured ? { ok: true } : { ok: false, error: 'OPENAI_API_KEY is not set' } };
          const healthy = report.status === 'healthy' && configured;
          const data = { status: healthy ? ('healthy' as const) : ('unhealthy' as const), timestamp: report.timestamp, checks, model: ctx.config.openai.imageModel };
          return reply
            .status(healthy ? 200 : 503)
            .header('cache-control', 'no-store')
            .send({ success: healthy, code: healthy ? CODES.health.ok : CODES.health.failed, message: healthy ? 'System healthy' : 'System unhealthy', data });
        },
      );

      app.post(
        '/upload',
        {
          config: { envelopeFailure: CODES.upload.failed, rateLimitClass: 'upload', multipartBody: singleFileField },
          schema: {
            tags: TAGS,
            summary: 'Upload a PNG or JPEG (multipart field `file`, at most MAX_UPLOAD_SIZE); its `url` is what /process/book takes',
            security: SIGNED_IN,
            consumes: ['multipart/form-data'],
            response: { 201: UploadAnswer, ...envelopeErrors, 400: ErrorEnvelope, 413: ErrorEnvelope, 415: ErrorEnvelope },
          },
        },
        async (request, reply) => {
          const principal = requireUser(request);
          return sendOk(reply, 201, CODES.upload.ok, 'File uploaded successfully', await uploadFile(ctx, principal, receiveOneFile(request, 'file')));
        },
      );

      app.post(
        '/initiate-process',
        {
          config: { envelopeFailure: CODES.initiate.failed },
          schema: { tags: TAGS, summary: 'Start a process; its init_id is what /process/book and /process/status take', security: SIGNED_IN, response: { 201: InitiateAnswer, ...envelopeErrors } },
        },
        async (request, reply) => sendOk(reply, 201, CODES.initiate.ok, 'Process initiated', await initiateProcess(ctx, requireUser(request))),
      );

      app.post(
        '/process/book',
        {
          config: { envelopeFailure: CODES.book.failed },
          schema: {
            tags: TAGS,
            summary: 'Put the source upload\'s subject into the target upload following the prompt (runs as an ai_edit job)',
            security: SIGNED_IN,
            body: BookBody,
            response: { 202: BookAnswer, ...envelopeErrors, 409: ErrorEnvelope, 503: ErrorEnvelope },
          },
        },
        async (request, reply) => {
          const answer = await bookProcess(ctx, requireUser(request), request.body, request.headers.host);
          return sendOk(reply, 202, CODES.book.ok, 'Processing started', answer);
        },
      );

      app.post(
        '/process/status',
        {
          config: { envelopeFailure: CODES.status.failed },
          schema: { tags: TAGS, summary: 'Where a process is: initiated, processing, completed (result_url) or failed (error)', security: SIGNED_IN, body: StatusBody, response: { 200: StatusAnswer, ...envelopeErrors } },
        },
        async (request, reply) => sendOk(reply, 200, CODES.status.ok, 'Status retrieved', await processStatus(ctx, requireUser(request), request.body.init_id)),
      );

      app.get(
        '/cache/status',
        {
          config: { envelopeFailure: CODES.cache.failed, adminOnly: true },
          schema: { tags: TAGS, summary: 'The TTL cache: size, counters and entries (admins and the static API_KEY only)', security: SIGNED_IN, response: { 200: CacheAnswer, ...envelopeErrors, 403: ErrorEnvelope, 503: ErrorEnvelope } },
        },
        async (request, reply) => {
          requireAdmin(request);
          const stats = await ctx.cache.stats().catch((err: unknown) => {
            // The Redis cache cannot be read (Redis down): that is the answer, not an internal error.
            request.log.warn({ err }, 'the cache could not be read for /cache/status');
            throw new ServiceUnavailable('The cache cannot be read now: its Redis (REDIS_URL) does not answer.', 'cache_unavailable');
          });
          return sendOk(reply, 200, CODES.cache.ok, 'Cache status retrieved', stats);
        },
      );

      app.get(
        '/files/:file_id',
        {
          // Not a Pictoora route: it serves what /upload stored and what a job produced, in the upload family's codes.
          config: { envelopeFailure: CODES.upload.failed },
          schema: {
            tags: TAGS,
            summary: 'One of your uploads or results (ETag, 304 and Range supported)',
            security: SIGNED_IN,
            params: FileParams,
            querystring: FileQuery,
            response: { ...imageAnswers, ...envelopeErrors, 412: ErrorEnvelope, 416: ErrorEnvelope },
          },
        },
        async (request, reply) => {
          const file = await servableFile(ctx, requireUser(request), request.params.file_id, request.query.size ?? 'original');
          return sendStoredImage(request, reply, ctx.blobs, jpegVariantFile(file.key, file.variant, file.createdAt, 'private, max-age=31536000, immutable'));
        },
      );
    },
    { prefix: '/api/v1' },
  );
}
