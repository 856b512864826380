/** Request and answer schemas of the AI-edit routes (validation, types and OpenAPI from one object). */
import { Type, type Static } from '@sinclair/typebox';
import { Envelope } from './envelope.js';

export const PROMPT_MAX = 4000;

const InitId = Type.String({ minLength: 1, maxLength: 128, description: 'From /initiate-process' });

export const UploadAnswer = Envelope(
  Type.Object({
    file_id: Type.String(),
    path: Type.String({ description: 'Storage key of the stored file (never a file-system path)' }),
    url: Type.String({ description: 'Where the file is served to its owner; pass it to /process/book' }),
  }),
);

export const InitiateAnswer = Envelope(Type.Object({ init_id: Type.String() }));

export const BookBody = Type.Object({
  init_id: InitId,
  source_url: Type.String({ minLength: 1, maxLength: 2048, description: 'The `url` of your upload of the subject (a child, a pet)' }),
  target_url: Type.String({ minLength: 1, maxLength: 2048, description: 'The `url` of your upload of the illustration' }),
  prompt: Type.String({ minLength: 1, maxLength: PROMPT_MAX, description: '1 to 4000 characters' }),
});
export type BookBody = Static<typeof BookBody>;

export const BookAnswer = Envelope(Type.Object({ init_id: Type.String(), status: Type.Literal('processing') }));

export const StatusBody = Type.Object({ init_id: InitId });

export const ProcessStatus = Type.Union([Type.Literal('initiated'), Type.Literal('processing'), Type.Literal('completed'), Type.Literal('failed')]);

export const StatusAnswer = Envelope(
  Type.Object({
    init_id: Type.String(),
    status: ProcessStatus,
    result_url: Type.Optional(Type.String({ description: 'When completed: the edited image (add ?size=medium or thumb for smaller)' })),
    error: Type.Optional(Type.String({ description: 'When failed: why, with the provider\'s reason' })),
  }),
);

export const CacheAnswer = Envelope(
  Type.Object({
    size: Type.Integer(),
    max_size: Type.Integer(),
    ttl_seconds: Type.Number(),
    hits: Type.Integer(),
    misses: Type.Integer(),
    evictions: Type.Integer(),
    entries: Type.Array(Type.Object({ key: Type.String(), expires_at: Type.String({ format: 'date-time' }) })),
  }),
);

const Check = Type.Object({ ok: Type.Boolean(), ms: Type.Optional(Type.Number()), error: Type.Optional(Type.String()) });

export const HealthAnswer = Type.Object({
  success: Type.Boolean(),
  code: Type.Integer(),
  message: Type.String(),
  data: Type.Object({
    status: Type.Union([Type.Literal('healthy'), Type.Literal('unhealthy')]),
    timestamp: Type.String({ format: 'date-time' }),
    checks: Type.Record(Type.String(), Check),
    model: Type.String(),
  }),
});

export const WelcomeAnswer = Envelope(Type.Object({ service: Type.String(), version: Type.String(), docs: Type.String() }));

export const FileParams = Type.Object({ file_id: Type.String({ maxLength: 128 }) });

export const FileQuery = Type.Object({
  size: Type.Optional(Type.Union([Type.Literal('original'), Type.Literal('medium'), Type.Literal('thumb')], { default: 'original' })),
});
