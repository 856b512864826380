/**
 * Opaque credentials: refresh tokens and API keys. Both are high-entropy
 * random strings, so a fast SHA-256 is the right stored form (a slow hash
 * protects guessable passwords, not 256-bit secrets) and lets the guard find
 * a key with one indexed lookup.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { newSecret } from '../ids.js';

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

export function newRefreshToken(): string {
  return newSecret(32);
}

export interface NewApiKey {
  key: string;
  prefix: string;
  hash: string;
}

const API_KEY_SHAPE = /^kiln_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$/;

/** `kiln_<prefix>_<secret>`: the prefix (hex, no underscores) is what listings show to tell keys apart. */
export function newApiKey(): NewApiKey {
  const prefix = randomBytes(4).toString('hex');
  const key = `kiln_${prefix}_${newSecret(32)}`;
  return { key, prefix, hash: sha256Hex(key) };
}

/** True when `value` has the shape of a user API key (so it is looked up, not compared with API_KEY). */
export function looksLikeApiKey(value: string): boolean {
  return API_KEY_SHAPE.test(value);
}

/** Constant-time comparison of two strings of any length. */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}
