import { randomBytes } from 'node:crypto';

/** An opaque, URL-safe id with 128 random bits (22 characters of base64url). */
export function newId(): string {
  return randomBytes(16).toString('base64url');
}

/** A secret token with `bytes` random bytes, base64url. */
export function newSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}
