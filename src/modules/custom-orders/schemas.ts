/** Request and response schemas of custom orders: validation, types and OpenAPI from one place. */
import { Type, type Static } from '@sinclair/typebox';
import { ORDER_STATUSES } from './lifecycle.js';
import { ORDER_SIZES } from './links.js';

const Status = Type.Union(ORDER_STATUSES.map((s) => Type.Literal(s)));
const NullableText = Type.Union([Type.String(), Type.Null()]);

const Urls = Type.Object(
  { original: Type.String(), medium: Type.String(), thumb: Type.String() },
  { description: 'Signed links to the photo route, valid without credentials for SIGNED_URL_TTL seconds' },
);

const Quality = Type.Object(
  {
    width: Type.Integer(),
    height: Type.Integer(),
    too_small: Type.Boolean({ description: 'under 800 pixels on the short side' }),
    blurry: Type.Boolean({ description: 'low variance of the Laplacian' }),
    duplicate_of: Type.Union([Type.String(), Type.Null()], { description: 'file_id of an earlier photo of this order showing the same picture' }),
  },
  { description: 'Checked on upload; informs, never rejects' },
);

export const OrderFile = Type.Object({
  file_id: Type.String(),
  original_filename: Type.String({ description: 'as sent by the client (control characters removed, at most 255 characters), for display only; never a path' }),
  stored_filename: Type.String({ description: 'YYYYMMDD_HHMMSS_<random>.jpg' }),
  content_type: Type.String({ description: 'sniffed from the bytes' }),
  bytes: Type.Integer(),
  width: Type.Integer(),
  height: Type.Integer(),
  sha256: Type.String(),
  quality: Quality,
  urls: Urls,
});

export const HistoryEntry = Type.Object({ status: Status, at: Type.String({ format: 'date-time' }), by: Type.String() });

export const OrderMetadata = Type.Object({
  order_id: Type.String(),
  user_id: Type.String(),
  pet_name: NullableText,
  pet_type: NullableText,
  notes: NullableText,
  status: Status,
  upload_timestamp: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
  history: Type.Array(HistoryEntry),
  files: Type.Array(OrderFile),
});

export const OrderParams = Type.Object({ order_id: Type.String() });
export const FileParams = Type.Object({ order_id: Type.String(), file_id: Type.String() });

export const FileQuery = Type.Object({
  size: Type.Optional(Type.Union(ORDER_SIZES.map((s) => Type.Literal(s)), { default: 'original' })),
  // Text, not an integer: a link whose `expires` was altered into something that is not a number is an
  // altered link (403 `invalid_signature`, routes.ts), not a validation error.
  expires: Type.Optional(Type.String({ description: 'signed links: unix time the link ends, in seconds', examples: ['1767225600'] })),
  sig: Type.Optional(Type.String({ description: 'signed links: the signature' })),
});
export type FileQuery = Static<typeof FileQuery>;

export const StatusBody = Type.Object({ status: Status }, { additionalProperties: false });

export const AdminQuery = Type.Object({
  status: Type.Optional(Status),
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
});

export const UploadAnswer = Type.Object({
  success: Type.Literal(true),
  message: Type.String(),
  order_id: Type.String(),
  files_uploaded: Type.Integer(),
  order_metadata: OrderMetadata,
});

export const ListAnswer = Type.Object({ success: Type.Literal(true), orders: Type.Array(OrderMetadata), count: Type.Integer() });
export const OrderAnswer = Type.Object({ success: Type.Literal(true), order: OrderMetadata });
export const DeleteAnswer = Type.Object({ success: Type.Literal(true), message: Type.String(), order_id: Type.String() });
export const AdminListAnswer = Type.Object({
  success: Type.Literal(true),
  orders: Type.Array(OrderMetadata),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
});
