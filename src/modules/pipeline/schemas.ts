/** Request and answer schemas of the pipeline routes (validation, types and OpenAPI in one). */
import { Type } from '@sinclair/typebox';
import { JobSchema } from '../product-images/schemas.js';
import { MAX_NAME_CHARS, MAX_PHOTOS, MIN_PHOTOS } from './intake.js';
import { MODEL_FORMATS, STAGES } from './service.js';
import { UploadedFile, type MultipartFields } from '../../platform/http/schemas.js';

/** The job answer of every job route, with the reconstruction's stage (null while queued). */
export const PipelineJobSchema = Type.Composite([
  JobSchema,
  Type.Object({
    stage: Type.Union([...STAGES.map((s) => Type.Literal(s)), Type.Null()], { description: 'the stage running, or the last one reached; null while queued' }),
  }),
]);

export const PipelineJobParams = Type.Object({ job_id: Type.String({ maxLength: 64 }) });

export const DownloadQuery = Type.Object({
  format: Type.Optional(Type.Union(MODEL_FORMATS.map((f) => Type.Literal(f)), { default: 'ply', description: 'ply (COLMAP\'s point cloud) or glb (glTF 2.0 binary, POINTS)' })),
});

/** The multipart fields of POST /pipeline/upload, for the OpenAPI document. */
export const UPLOAD_FIELDS: MultipartFields = Type.Object({
  files: Type.Array(UploadedFile, { minItems: MIN_PHOTOS, maxItems: MAX_PHOTOS, description: `the photos (JPEG or PNG): the field repeated ${MIN_PHOTOS} to ${MAX_PHOTOS} times` }),
  name: Type.Optional(Type.String({ maxLength: MAX_NAME_CHARS })),
});
