/** Request and answer schemas of the product-image and job routes (validation, types and OpenAPI in one). */
import { Type, type Static } from '@sinclair/typebox';
import { JOB_STATUSES } from '../../platform/jobs/index.js';

/** The sizes a product picture is stored in (the same presets as an upload). */
export const PRODUCT_SIZES = ['original', 'medium', 'thumb'] as const;
export type ProductSize = (typeof PRODUCT_SIZES)[number];

export const FetchImageBody = Type.Object(
  {
    // Any JSON value on purpose: the service normalises and checks it, so every bad code (a number with a
    // sign, null, a list) is 422 `invalid_ean` rather than whatever ajv's type coercion would make of it.
    ean_code: Type.Unknown({ description: 'GTIN-8, UPC-A, EAN-13 or GTIN-14 as a string of digits; spaces and hyphens are ignored', examples: ['4006381333931'] }),
    description: Type.Optional(Type.Union([Type.String({ maxLength: 1000 }), Type.Null()])),
  },
  { additionalProperties: false },
);
export type FetchImageBody = Static<typeof FetchImageBody>;

export const FetchImageAnswer = Type.Object({
  job_id: Type.String(),
  status: Type.Literal('queued', { description: 'always queued (the spec\'s answer); a job handed back while in flight may already be processing: GET /api/v1/jobs/{job_id} says' }),
  ean_code: Type.String(),
});

const JobError = Type.Object({ code: Type.String(), detail: Type.String() });

export const JobSchema = Type.Object({
  job_id: Type.String(),
  type: Type.String(),
  status: Type.Union(JOB_STATUSES.map((s) => Type.Literal(s))),
  progress: Type.Number({ minimum: 0, maximum: 1 }),
  attempts: Type.Integer(),
  max_attempts: Type.Integer(),
  input: Type.Unknown(),
  result: Type.Unknown(),
  error: Type.Union([JobError, Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
  started_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  finished_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  user_id: Type.Union([Type.String(), Type.Null()]),
});

export const JobParams = Type.Object({ job_id: Type.String({ maxLength: 64 }) });

export const JobListQuery = Type.Object({
  status: Type.Optional(Type.Union(JOB_STATUSES.map((s) => Type.Literal(s)))),
  type: Type.Optional(Type.String({ maxLength: 64 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
  cursor: Type.Optional(Type.String({ maxLength: 512 })),
});
export type JobListQuery = Static<typeof JobListQuery>;

export const JobListAnswer = Type.Object({
  jobs: Type.Array(JobSchema),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
});

export const EanParams = Type.Object({ ean_code: Type.String({ maxLength: 64 }) });

export const ProductFileQuery = Type.Object({
  size: Type.Optional(Type.Union(PRODUCT_SIZES.map((s) => Type.Literal(s)), { default: 'original' })),
});

export const ProductImageAnswer = Type.Object({
  ean_code: Type.String(),
  product_name: Type.Union([Type.String(), Type.Null()]),
  source_url: Type.String(),
  fetched_at: Type.String({ format: 'date-time' }),
  width: Type.Integer(),
  height: Type.Integer(),
  urls: Type.Object({ original: Type.String(), medium: Type.String(), thumb: Type.String() }),
});
export type ProductImageAnswer = Static<typeof ProductImageAnswer>;
