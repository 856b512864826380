import { Type, type Static } from '@sinclair/typebox';
import { GALLERY_SIZES } from './images.js';

const Urls = Type.Object(Object.fromEntries(GALLERY_SIZES.map((s) => [s, Type.String()])) as Record<(typeof GALLERY_SIZES)[number], ReturnType<typeof Type.String>>);

export const ProjectParams = Type.Object({
  project_id: Type.String({ description: 'Gallery name chosen by the client: ^[A-Za-z0-9_-]{1,64}$' }),
});

export const ImageParams = Type.Object({
  project_id: Type.String(),
  image_id: Type.String(),
});

export const SizeQuery = Type.Object({
  size: Type.Optional(Type.Union(GALLERY_SIZES.map((s) => Type.Literal(s)), { default: 'original' })),
});
export type SizeQuery = Static<typeof SizeQuery>;

export const UploadAnswer = Type.Object({
  image_id: Type.String(),
  project_id: Type.String(),
  is_primary: Type.Boolean(),
  width: Type.Integer(),
  height: Type.Integer(),
  urls: Urls,
});

export const ImageEntry = Type.Object({
  image_id: Type.String(),
  is_primary: Type.Boolean(),
  created_at: Type.String({ format: 'date-time' }),
  width: Type.Integer(),
  height: Type.Integer(),
  bytes: Type.Integer(),
  sha256: Type.String(),
  urls: Urls,
});

export const ListAnswer = Type.Object({
  project_id: Type.String(),
  primary_image_id: Type.Union([Type.String(), Type.Null()]),
  images: Type.Array(ImageEntry),
});

export const PrimaryAnswer = Type.Object({
  project_id: Type.String(),
  primary_image_id: Type.String(),
});
