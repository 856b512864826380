/**
 * Reading a pipeline upload from its multipart parts as they arrive: each
 * `files` part streams to a temp file (counted, hashed, sniffed, cut at
 * MAX_UPLOAD_SIZE; images/ingest.ts), its header is checked against
 * MAX_IMAGE_PIXELS, and it is handed to `onPhoto` under a name we make
 * (0001.jpg, 0002.png, …): a client's file name is never used. The `name`
 * text field is checked as it comes. Any violation throws at once: the
 * error handler reads out what is left of the body, up to a bound
 * (platform/http/drain.ts), rather than this reading up to 200 more photos
 * only to drop them. The caller owns what was handed over so far.
 */
import type { Multipart, MultipartValue } from '@fastify/multipart';
import { UnsupportedImage, ValidationFailed } from '../../errors.js';
import { inspect } from '../../images/decode.js';
import { discardStaged, stageUpload, type StagedUpload } from '../../images/ingest.js';
import type { ImageType } from '../../images/sniff.js';
import { refuseBadText, sentTwice } from '../../platform/http/validation.js';

/** COLMAP reads these (through FreeImage); WebP, AVIF and HEIC it cannot. */
export const PIPELINE_IMAGE_TYPES: ReadonlySet<ImageType> = new Set<ImageType>(['jpeg', 'png']);

export const MIN_PHOTOS = 8;
export const MAX_PHOTOS = 200;
export const MAX_NAME_CHARS = 200;

const EXTENSIONS: Partial<Record<ImageType, string>> = { jpeg: 'jpg', png: 'png' };

export interface IncomingPhoto {
  staged: StagedUpload;
  /** The name we gave it, such as 0001.jpg: its blob key's last segment and its file name in the workspace. */
  fileName: string;
}

export interface IntakeOptions {
  tmpDir: string;
  maxBytes: number;
  maxImagePixels: number;
}

/** 0001.jpg for the first JPEG: four digits cover MAX_PHOTOS. */
export function photoFileName(seq: number, type: ImageType): string {
  const ext = EXTENSIONS[type];
  if (!ext) throw new UnsupportedImage('The file is not an accepted image (JPEG or PNG).', 'unsupported_image');
  return `${String(seq).padStart(4, '0')}.${ext}`;
}

function checkName(part: MultipartValue): string {
  const text = part.value;
  if (typeof text !== 'string' || part.mimetype.toLowerCase().startsWith('application/json')) {
    throw new ValidationFailed('Send name as plain text, not as JSON.', [{ field: 'body.name', message: 'must be plain text, not application/json' }]);
  }
  refuseBadText(text, 'body.name');
  if (part.valueTruncated || [...text].length > MAX_NAME_CHARS) {
    throw new ValidationFailed(`name may have at most ${MAX_NAME_CHARS} characters.`, [{ field: 'body.name', message: `must have at most ${MAX_NAME_CHARS} characters` }]);
  }
  return text;
}

export function tooFewPhotos(count: number): ValidationFailed {
  return new ValidationFailed(
    `Send at least ${MIN_PHOTOS} photos in the multipart field "files"; this upload has ${count}.`,
    [{ field: 'body.files', message: `must have at least ${MIN_PHOTOS} items` }],
    'too_few_photos',
  );
}

function tooManyPhotos(): ValidationFailed {
  return new ValidationFailed(`Send at most ${MAX_PHOTOS} photos in one upload.`, [{ field: 'body.files', message: `must have at most ${MAX_PHOTOS} items` }], 'too_many_photos');
}

function notAFileField(name: string): ValidationFailed {
  return new ValidationFailed('Send the photos in the repeated multipart field "files".', [{ field: `body.${name}`, message: 'is not a file field of this upload' }]);
}

/**
 * The multipart limits of this route (the app's defaults fit one custom
 * order): one file more than MAX_PHOTOS, so the extra one is seen and
 * refused as `too_many_photos` rather than by the parser.
 */
export const PIPELINE_MULTIPART_LIMITS = { files: MAX_PHOTOS + 1, parts: MAX_PHOTOS + 21, fields: 20 } as const;

/**
 * Consumes every part; resolves with the `name` field (null when absent) and
 * the number of photos once the body has ended. Unknown text fields are
 * ignored, as custom orders do.
 */
export async function readPipelineUpload(parts: AsyncIterable<Multipart>, opts: IntakeOptions, onPhoto: (photo: IncomingPhoto) => Promise<void>): Promise<{ name: string | null; photos: number }> {
  let name: string | null = null;
  let named = false;
  let photos = 0;
  // Walked by hand, as platform/http/one-file.ts does: a refusal leaves the iterator as it is for the drain.
  const iterator = parts[Symbol.asyncIterator]();
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
    const part = next.value;
    if (part.type === 'field') {
      if (part.fieldname !== 'name') continue;
      if (named) throw sentTwice('name');
      named = true;
      name = checkName(part);
      continue;
    }
    photos += 1;
    const refusal = part.fieldname !== 'files' ? notAFileField(part.fieldname) : photos > MAX_PHOTOS ? tooManyPhotos() : null;
    if (refusal) {
      part.file.resume();
      throw refusal;
    }
    const staged = await stageUpload(part.file, { tmpDir: opts.tmpDir, maxBytes: opts.maxBytes, accept: PIPELINE_IMAGE_TYPES });
    try {
      // Header only: a photo past MAX_IMAGE_PIXELS (413) or with an unreadable header (415) never reaches COLMAP's decoder.
      await inspect(staged.path, opts.maxImagePixels);
      await onPhoto({ staged, fileName: photoFileName(photos, staged.type) });
    } finally {
      // onPhoto moves the file into the blob store; whatever is left here (a refusal) goes.
      await discardStaged(staged);
    }
  }
  if (photos < MIN_PHOTOS) throw tooFewPhotos(photos);
  return { name: name === null || name.trim() === '' ? null : name.trim(), photos };
}

