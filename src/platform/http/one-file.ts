/**
 * A multipart body that carries exactly one file, in one named field (a
 * gallery upload, an AI-edit upload). The file is handed to `take` as it
 * streams in, and the rest of the body is read before the result is given
 * back, so a second file is refused instead of silently dropped: the caller
 * commits nothing until the whole body has been seen. Text fields are
 * ignored, as the services these routes replace ignored them.
 *
 * On a refusal the error leaves at once; the error handler reads out what
 * is left of the body, up to a bound (drain.ts), so the client still sees
 * the answer.
 */
import type { Readable } from 'node:stream';
import type { Multipart } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { ValidationFailed } from '../../errors.js';
import { discardStaged, stageUpload, type ReceiveUpload } from '../../images/ingest.js';

function fileFieldRequired(field: string): ValidationFailed {
  return new ValidationFailed(`Send the image in the multipart field "${field}".`, [{ field: `body.${field}`, message: 'is required' }]);
}

function notTheFileField(field: string, sent: string): ValidationFailed {
  return new ValidationFailed(`Send the image in the multipart field "${field}"; "${sent}" is not a file field of this upload.`, [
    { field: `body.${sent}`, message: 'is not a file field of this upload' },
  ]);
}

function moreThanOneFile(field: string): ValidationFailed {
  return new ValidationFailed('Send one image per request; this body carries more than one file.', [{ field: `body.${field}`, message: 'must be a single file' }], 'too_many_files');
}

/**
 * Reads every part of `parts`. The one file of `field` goes to `take`; what
 * it resolves to is returned once the body has ended. When the body turns
 * out to be wrong after `take` has run (a second file), `drop` undoes it
 * before the refusal leaves.
 */
async function readOneFile<T>(parts: AsyncIterable<Multipart>, field: string, take: (file: Readable) => Promise<T>, drop: (taken: T) => Promise<void>): Promise<T> {
  const iterator = parts[Symbol.asyncIterator]();
  let taken: { value: T } | undefined;
  try {
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const part = next.value;
      if (part.type === 'field') continue;
      const refusal = part.fieldname !== field ? notTheFileField(field, part.fieldname) : taken ? moreThanOneFile(field) : null;
      if (refusal) {
        // Nobody reads this part now; let it flow so the rest of the body can be read out.
        part.file.resume();
        throw refusal;
      }
      taken = { value: await take(part.file) };
    }
  } catch (err) {
    if (taken) await drop(taken.value);
    throw err;
  }
  if (!taken) throw fileFieldRequired(field);
  return taken.value;
}

/** The request's one file in `field`, staged as the service that takes it asks. */
export function receiveOneFile(request: FastifyRequest, field: string): ReceiveUpload {
  return (opts) => readOneFile(request.parts(), field, (file) => stageUpload(file, opts), discardStaged);
}
