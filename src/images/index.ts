/**
 * The image engine: everything Kiln does to pixels and image bytes.
 *
 * - sniff.ts    type from magic bytes, never from names
 * - ingest.ts   upload stream -> temp file, counted, hashed, size-limited, sniffed
 * - decode.ts   header check and the one bounded decode to 8-bit sRGB
 * - variants.ts the size table (SIZES) and renderVariants
 * - limit.ts    how many decodes, and how much pixel memory, at once
 * - serve.ts    stored image -> HTTP with ETag, 304, Range, HEAD
 *
 * Modules import from the files directly; this index is for readers and tools.
 */
export { IMAGE_MIME, sniffImageType, type ImageType } from './sniff.js';
export { discardStaged, stageUpload, type StagedUpload, type StageOptions } from './ingest.js';
export {
  SIZES,
  SIZE_NAMES,
  configureImageEngine,
  decodeLoad,
  isSizeName,
  renderVariants,
  type RenderedImage,
  type RenderedVariant,
  type RenderOptions,
  type SizeName,
  type SizeRule,
} from './variants.js';
export { parseRange, RangeNotSatisfiable, sendStoredImage, type StoredFile } from './serve.js';
