/**
 * Reading a custom-order upload from its multipart parts as they arrive:
 * each `files` part streams to a temp file (counted, hashed, sniffed, cut at
 * MAX_UPLOAD_SIZE) and is handed to `onPhoto` at once, so its rendering can
 * start while the next part is still arriving. Text fields are checked as
 * they come. Any violation throws; the caller owns the staged files handed
 * over so far and removes them.
 */
import type { Multipart, MultipartValue } from '@fastify/multipart';
import { ValidationFailed } from '../../errors.js';
import { stageUpload } from '../../images/ingest.js';
import type { ImageType } from '../../images/sniff.js';
import type { IncomingPhoto } from './photos.js';
import { refuseBadText, sentTwice } from '../../platform/http/validation.js';

/** Spec: order photos are JPEG, PNG or WebP by content; AVIF and HEIC, which galleries take, are refused here. */
export const ORDER_IMAGE_TYPES: ReadonlySet<ImageType> = new Set<ImageType>(['jpeg', 'png', 'webp']);

export const TEXT_LIMITS = { pet_name: 100, pet_type: 100, notes: 2000 } as const;
type TextField = keyof typeof TEXT_LIMITS;

export type OrderText = Record<TextField, string | null>;

export interface IntakeOptions {
  tmpDir: string;
  maxBytes: number;
  maxFiles: number;
}

function isTextField(name: string): name is TextField {
  return Object.hasOwn(TEXT_LIMITS, name);
}

/** Characters as people count them (code points), not UTF-16 units. */
function characters(s: string): number {
  return [...s].length;
}

/**
 * Text fields are kept exactly as sent. @fastify/multipart JSON-parses a field
 * sent as application/json and keeps no raw text, so such a field (whatever
 * it parsed to: an object, a number, even a string without its quotes) cannot
 * be kept as given and is refused, naming the field.
 */
function checkText(name: TextField, part: MultipartValue): string {
  const text = part.value;
  if (typeof text !== 'string' || part.mimetype.toLowerCase().startsWith('application/json')) {
    throw new ValidationFailed(`Send ${name} as plain text, not as JSON.`, [{ field: `body.${name}`, message: 'must be plain text, not application/json' }]);
  }
  refuseBadText(text, `body.${name}`);
  const max = TEXT_LIMITS[name];
  if (part.valueTruncated || characters(text) > max) {
    throw new ValidationFailed(`${name} may have at most ${max} characters.`, [{ field: `body.${name}`, message: `must have at most ${max} characters` }]);
  }
  return text;
}

function tooManyFiles(max: number): ValidationFailed {
  return new ValidationFailed(`Send at most ${max} files in one order.`, [{ field: 'body.files', message: `must have at most ${max} items` }], 'too_many_files');
}

function notAFileField(name: string): ValidationFailed {
  return new ValidationFailed('Send the photos in the repeated multipart field "files".', [{ field: `body.${name}`, message: 'is not a file field of this upload' }]);
}

/**
 * Consumes every part; resolves with the text fields once the body has ended.
 * On a refusal the rest of the body is read and thrown away before the error
 * leaves: a client still sending cannot read an answer, so stopping midway
 * would leave it hanging. The multipart limits bound what is read.
 */
export async function readOrderUpload(parts: AsyncIterable<Multipart>, opts: IntakeOptions, onPhoto: (photo: IncomingPhoto) => void): Promise<OrderText> {
  const iterator = parts[Symbol.asyncIterator]();
  try {
    return await readParts(iterator, opts, onPhoto);
  } catch (err) {
    await discardRest(iterator);
    throw err;
  }
}

async function readParts(iterator: AsyncIterator<Multipart>, opts: IntakeOptions, onPhoto: (photo: IncomingPhoto) => void): Promise<OrderText> {
  const text: OrderText = { pet_name: null, pet_type: null, notes: null };
  const seen = new Set<string>();
  let files = 0;
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
    const part = next.value;
    if (part.type === 'field') {
      // Unknown text fields are ignored, as the Pet Planter service's form handling did.
      if (!isTextField(part.fieldname)) continue;
      // Keeping either value would drop the other without a word.
      if (seen.has(part.fieldname)) throw sentTwice(part.fieldname);
      seen.add(part.fieldname);
      text[part.fieldname] = checkText(part.fieldname, part);
      continue;
    }
    files += 1;
    const refusal = part.fieldname !== 'files' ? notAFileField(part.fieldname) : files > opts.maxFiles ? tooManyFiles(opts.maxFiles) : null;
    if (refusal) {
      // This part is not read by anyone now; let it flow so the rest of the body can be discarded.
      part.file.resume();
      throw refusal;
    }
    const staged = await stageUpload(part.file, { tmpDir: opts.tmpDir, maxBytes: opts.maxBytes, accept: ORDER_IMAGE_TYPES });
    onPhoto({ staged, originalFilename: part.filename });
  }
  if (files === 0) {
    throw new ValidationFailed('Send 1 or more photos in the multipart field "files".', [{ field: 'body.files', message: 'must have at least 1 item' }], 'no_files');
  }
  return text;
}

/** Reads the remaining parts to their end without keeping anything; errors of a body already refused are moot. */
async function discardRest(iterator: AsyncIterator<Multipart>): Promise<void> {
  try {
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      if (next.value.type === 'file') next.value.file.resume();
    }
  } catch {
    // the body is refused already; a second problem in it changes nothing
  }
}
