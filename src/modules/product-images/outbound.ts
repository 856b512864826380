/**
 * Every request the `ean_fetch` job sends out, through safeFetch: only
 * hosts on the public internet or in FETCH_ALLOWED_HOSTS, at most 3
 * redirects, MAX_UPLOAD_SIZE bytes, connect and total timeouts. safeFetch's
 * typed failures become job errors here: worth a retry (timeouts, refused
 * connections, 5xx, 429) or not (blocked address, redirect loop, too large).
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../../config.js';
import { stageUpload, type StagedUpload } from '../../images/ingest.js';
import { findFetchError, safeFetch, type FetchError, type SafeFetchOptions } from '../../platform/fetch/index.js';
import { PermanentJobError, TransientJobError } from '../../platform/jobs/index.js';
import { VERSION } from '../../version.js';
import type { JsonAnswer } from './providers/types.js';

export interface OutboundTimeouts {
  connectTimeoutMs: number;
  /** For one request, its redirects and its body. */
  totalTimeoutMs: number;
}

export interface Outbound {
  /** Any status comes back as an answer (the provider decides what a 404 means); network failures throw job errors. */
  getJson(url: string, signal: AbortSignal): Promise<JsonAnswer>;
  /** Downloads a picture and stages it exactly as an upload (size cap, hash, type from the bytes). */
  download(url: string, tmpDir: string, signal: AbortSignal): Promise<StagedUpload>;
}

const MAX_REDIRECTS = 3;
/** A product record is small; a provider answering megabytes of JSON is broken. */
const MAX_JSON_BYTES = 2 * 1024 * 1024;

/** safeFetch's failure as the job error it means for this job. */
export function jobErrorOf(err: FetchError, what: string): TransientJobError | PermanentJobError {
  switch (err.code) {
    case 'blocked_address':
    case 'bad_scheme':
    case 'bad_url':
      return new PermanentJobError('source_blocked', `Kiln may not fetch the ${what} from there: ${err.message}`);
    case 'too_large':
      return new PermanentJobError('image_too_large', `The ${what} is too large: ${err.message}`);
    case 'too_many_redirects':
      return new PermanentJobError('source_unreachable', `The ${what} redirects too often: ${err.message}`);
    default: {
      // The job's status says whether it will be tried again; the detail says only what happened.
      const detail = `The ${what} could not be fetched: ${err.message}`;
      return err.transient ? new TransientJobError('source_unreachable', detail, err.retryAfterMs) : new PermanentJobError('source_unreachable', detail);
    }
  }
}

export function createOutbound(config: Pick<Config, 'fetchAllowedHosts' | 'maxUploadSize'>, timeouts: OutboundTimeouts): Outbound {
  const base = (signal: AbortSignal, maxBytes: number): SafeFetchOptions => ({
    allowedHosts: config.fetchAllowedHosts,
    maxBytes,
    maxRedirects: MAX_REDIRECTS,
    connectTimeoutMs: timeouts.connectTimeoutMs,
    totalTimeoutMs: timeouts.totalTimeoutMs,
    // Open Food Facts asks every client to name itself.
    headers: { 'user-agent': `Kiln/${VERSION} (self-hosted image service)` },
    signal,
  });

  return {
    async getJson(url, signal) {
      try {
        const res = await safeFetch(url, { ...base(signal, MAX_JSON_BYTES), headers: { ...base(signal, 0).headers, accept: 'application/json' } });
        try {
          return { status: res.status, body: JSON.parse((res.body ?? Buffer.alloc(0)).toString('utf8')) as unknown };
        } catch {
          // A success that is not JSON is a broken or busy provider (a maintenance page), not an answer about the product.
          throw new TransientJobError('source_unreachable', `The product database answered ${res.status} with something that is not JSON.`);
        }
      } catch (err) {
        const fe = findFetchError(err);
        if (fe?.code === 'http_status' && fe.status !== undefined) return { status: fe.status, body: null, retryAfterMs: fe.retryAfterMs };
        if (fe?.code === 'too_large') {
          throw new PermanentJobError('source_unreachable', `The product database answer is larger than ${MAX_JSON_BYTES} bytes: not a product record.`);
        }
        throw fe ? jobErrorOf(fe, 'product database answer') : err;
      }
    },

    async download(url, tmpDir, signal) {
      const file = path.join(tmpDir, `download-${randomBytes(16).toString('hex')}`);
      try {
        await safeFetch(url, { ...base(signal, config.maxUploadSize), toFile: file });
        // Staged again as an upload so a picture passes exactly the checks a person's photo does.
        return await stageUpload(createReadStream(file), { tmpDir, maxBytes: config.maxUploadSize });
      } catch (err) {
        const fe = findFetchError(err);
        throw fe ? jobErrorOf(fe, 'product picture') : err;
      } finally {
        await rm(file, { force: true });
      }
    },
  };
}
