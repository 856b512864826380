/**
 * Password hashing with argon2id (memory-hard). The library defaults are
 * OWASP's recommended argon2id settings (19 MiB, 2 passes, 1 lane).
 */
import { hash, verify } from '@node-rs/argon2';

/** argon2id is the library's default algorithm; its const enum cannot be imported under esbuild, so it is not named here. */
export async function hashPassword(password: string): Promise<string> {
  return hash(password);
}

export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, password);
  } catch (err) {
    // A malformed stored hash means "no match", never a 500 that tells an attacker something.
    if (err instanceof Error) return false;
    throw err;
  }
}

// One hash of a throwaway password, made once per process, so a login for an
// unknown email spends the same time verifying as one for a known email.
let dummyHash: Promise<string> | undefined;

/** Burns the time of one verification; always false. */
export async function verifyAgainstDummy(password: string): Promise<false> {
  dummyHash ??= hash('kiln-dummy-password-for-timing');
  await verifyPassword(await dummyHash, password);
  return false;
}
