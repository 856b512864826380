import { randomBytes } from 'node:crypto';

/** An opaque, URL-safe id with 128 random bits (22 characters of base64url). */
export function newId(): string {
  return randomBytes(16).toString('base64url');
}

/** A secret token with `bytes` random bytes, base64url. */
export function newSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/**
 * Request ids: a random prefix per process and a counter. Unique across
 * processes and cheap on the hot path; they only need to be unique, not
 * secret (they are echoed in X-Request-Id and written in logs).
 */
export class RequestIds {
  private readonly prefix = randomBytes(6).toString('base64url');
  private count = 0;

  next(): string {
    this.count += 1;
    return `${this.prefix}${this.count.toString(36)}`;
  }
}
