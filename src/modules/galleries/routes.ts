/**
 * HTTP routes of project galleries (docs/api.md). Parse, call the
 * service, shape the answer: the rules live in service.ts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Context } from '../../context.js';
import { requireUser } from '../../auth/guard.js';
import { jpegVariantFile, sendStoredImage } from '../../images/serve.js';
import { receiveOneFile } from '../../platform/http/one-file.js';
import { imageAnswers, ProblemSchema, SIGNED_IN, singleFileField } from '../../platform/http/schemas.js';
import { assertMayAskToRead } from './access.js';
import { galleryHotRead, IMAGE_ROUTE, IMMUTABLE, PUBLIC_IMAGE_CACHE } from './hot-read.js';
import { blobKey, type GallerySize, type ImageFile } from './images.js';
import { GalleryService } from './service.js';
import { ImageParams, ListAnswer, PrimaryAnswer, ProjectParams, SizeQuery, UploadAnswer } from './schemas.js';

const TAGS = ['galleries'];

export async function galleryRoutes(parent: FastifyInstance, ctx: Context): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const galleries = new GalleryService(ctx);
  const hotRead = galleryHotRead(ctx, galleries);
  if (hotRead) parent.hotPaths.add(hotRead);

  // With private reads, no credentials is a 401 before Fastify validates the query: a caller who may not read is not told which field is wrong.
  const mayAskToRead = async (request: FastifyRequest): Promise<void> => assertMayAskToRead(galleries.publicRead, request.principal);

  /** `lastModified`: the image's upload time, or for the thumbnail a time that moves on whenever the primary changes (service.ts). */
  function serve(request: FastifyRequest, reply: FastifyReply, imageId: string, file: ImageFile, size: GallerySize, cacheControl: string, lastModified = file.createdAt) {
    return sendStoredImage(request, reply, ctx.blobs, jpegVariantFile(blobKey(imageId, size), file.variants[size], lastModified, cacheControl));
  }

  app.post(
    '/projects/:project_id/images',
    {
      config: { rateLimitClass: 'upload', multipartBody: singleFileField },
      schema: {
        tags: TAGS,
        summary: 'Upload an image (multipart field `file`); the first upload to a free project_id makes you its owner',
        security: SIGNED_IN,
        consumes: ['multipart/form-data'],
        params: ProjectParams,
        response: { 201: UploadAnswer, 401: ProblemSchema, 404: ProblemSchema, 413: ProblemSchema, 415: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request, reply) => {
      const principal = requireUser(request);
      galleries.assertProjectId(request.params.project_id);
      const image = await galleries.upload(principal, request.params.project_id, receiveOneFile(request, 'file'));
      return reply.status(201).send({
        image_id: image.image_id,
        project_id: image.project_id,
        is_primary: image.is_primary,
        width: image.width,
        height: image.height,
        urls: image.urls,
      });
    },
  );

  app.get(
    '/projects/:project_id/images',
    {
      preValidation: mayAskToRead,
      schema: {
        tags: TAGS,
        summary: 'List a project\'s images in upload order',
        params: ProjectParams,
        response: { 200: ListAnswer, 401: ProblemSchema, 404: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request) => galleries.list(request.principal, request.params.project_id),
  );

  app.get(
    IMAGE_ROUTE,
    {
      preValidation: mayAskToRead,
      schema: {
        tags: TAGS,
        summary: 'One image in one size (default original); ETag, 304 and Range supported',
        params: ImageParams,
        querystring: SizeQuery,
        response: { ...imageAnswers, 404: ProblemSchema, 412: ProblemSchema, 416: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request, reply) => {
      const { project_id, image_id } = request.params;
      const file = await galleries.imageFile(request.principal, project_id, image_id);
      const cache = galleries.publicRead ? PUBLIC_IMAGE_CACHE : `private, ${IMMUTABLE}`;
      return serve(request, reply, image_id, file, request.query.size ?? 'original', cache);
    },
  );

  app.get(
    '/projects/:project_id/thumbnail',
    {
      preValidation: mayAskToRead,
      schema: {
        tags: TAGS,
        summary: 'The primary image\'s thumb; follows the primary, so clients revalidate',
        params: ProjectParams,
        response: { ...imageAnswers, 404: ProblemSchema, 412: ProblemSchema, 416: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request, reply) => {
      const { imageId, file, lastModified } = await galleries.primaryFile(request.principal, request.params.project_id);
      return serve(request, reply, imageId, file, 'thumb', galleries.publicRead ? 'no-cache' : 'private, no-cache', lastModified);
    },
  );

  app.delete(
    '/projects/:project_id/images/:image_id',
    {
      schema: {
        tags: TAGS,
        summary: 'Delete an image; when it was primary, the first remaining image becomes primary',
        security: SIGNED_IN,
        params: ImageParams,
        response: { 204: { type: 'null' }, 401: ProblemSchema, 404: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request, reply) => {
      await galleries.remove(requireUser(request), request.params.project_id, request.params.image_id);
      return reply.status(204).send();
    },
  );

  app.put(
    '/projects/:project_id/primary/:image_id',
    {
      schema: {
        tags: TAGS,
        summary: 'Make an image the project\'s primary (cover)',
        security: SIGNED_IN,
        params: ImageParams,
        response: { 200: PrimaryAnswer, 401: ProblemSchema, 404: ProblemSchema, 422: ProblemSchema },
      },
    },
    async (request) => galleries.setPrimary(requireUser(request), request.params.project_id, request.params.image_id),
  );
}
