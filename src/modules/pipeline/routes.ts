/**
 * HTTP routes of the photogrammetry pipeline (docs/pipeline.md). Parse,
 * call the service, shape the answer; the rules live in service.ts and the
 * reconstruction in job.ts.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { requireUser } from '../../auth/guard.js';
import type { Context } from '../../context.js';
import { sendStoredImage } from '../../images/serve.js';
import { authProblems, bytesAnswer, imageAnswers, ProblemSchema, SIGNED_IN } from '../../platform/http/schemas.js';
import { MAX_PHOTOS, PIPELINE_MULTIPART_LIMITS } from './intake.js';
import { DownloadQuery, PipelineJobParams, PipelineJobSchema, UPLOAD_FIELDS } from './schemas.js';
import { MODEL_TYPES, PipelineService } from './service.js';

const TAGS = ['pipeline'];

export async function pipelineRoutes(parent: FastifyInstance, ctx: Context): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const pipeline = new PipelineService(ctx);

  app.post(
    '/pipeline/upload',
    {
      config: { rateLimitClass: 'upload', multipartBody: UPLOAD_FIELDS, mostFiles: MAX_PHOTOS },
      schema: {
        tags: TAGS,
        summary: 'Upload 8 to 200 photos of an object (repeated multipart field `files`, optional `name`): a photogrammetry job makes a 3D model of it',
        security: SIGNED_IN,
        consumes: ['multipart/form-data'],
        response: { 202: PipelineJobSchema, 401: ProblemSchema, 413: ProblemSchema, 415: ProblemSchema, 422: ProblemSchema, 503: ProblemSchema },
      },
    },
    async (request, reply) => {
      const principal = requireUser(request);
      // A refused upload's unread rest is drained by the error handler (platform/http/drain.ts).
      const job = await pipeline.upload(principal, request.parts({ limits: PIPELINE_MULTIPART_LIMITS }));
      return reply.status(202).header('location', `/pipeline/status/${job.job_id}`).send(job);
    },
  );

  app.get(
    '/pipeline/status/:job_id',
    {
      schema: {
        tags: TAGS,
        summary: 'A photogrammetry job (yours, or any for an admin): status, progress 0-1 and stage',
        security: SIGNED_IN,
        params: PipelineJobParams,
        response: { 200: PipelineJobSchema, ...authProblems },
      },
    },
    async (request) => pipeline.job(requireUser(request), request.params.job_id),
  );

  app.get(
    '/pipeline/download/:job_id',
    {
      schema: {
        tags: TAGS,
        summary: 'The 3D model of a completed job, as PLY or GLB; ETag, 304 and Range supported',
        security: SIGNED_IN,
        params: PipelineJobParams,
        querystring: DownloadQuery,
        response: {
          200: { description: 'The model', content: { [MODEL_TYPES.glb]: { schema: { type: 'string', format: 'binary' } }, [MODEL_TYPES.ply]: { schema: { type: 'string', format: 'binary' } } } },
          206: bytesAnswer('application/octet-stream', 'The requested byte range of the model'),
          304: imageAnswers[304],
          ...authProblems,
          409: ProblemSchema,
          412: ProblemSchema, 416: ProblemSchema,
        },
      },
      // The attachment header belongs to the file; a problem answered instead (a 416) is shown, not saved.
      onSend: async (_request, reply, payload) => {
        if (reply.statusCode >= 400) reply.removeHeader('content-disposition');
        return payload;
      },
    },
    async (request, reply) => {
      const format = request.query.format ?? 'ply';
      const file = await pipeline.model(requireUser(request), request.params.job_id, format);
      // The name is ours (the job id), never the upload's `name`.
      reply.header('content-disposition', `attachment; filename="${file.fileName}"`);
      return sendStoredImage(request, reply, ctx.blobs, file);
    },
  );
}
