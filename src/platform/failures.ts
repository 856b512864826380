/**
 * Reading a failure for what it says about the machine rather than the
 * request: the chain of causes a library or Kiln wrapped it in, and whether
 * the storage it failed on is full, read-only or not Kiln's to write. The
 * HTTP layer (a 503 that says why), the job runner (an outage, retried),
 * /health (the kind of a failed check) and outbound fetches (a local write
 * is not the server's fault) all read them the same way from here.
 */

/** How deep into `cause` to look: Kysely, pg and Kiln wrap a failure a couple of times at most. */
const CAUSE_DEPTH = 4;

/** `err` and the causes it wraps, outermost first. */
export function causeChain(err: unknown): Error[] {
  const chain: Error[] = [];
  for (let e = err; e instanceof Error && chain.length < CAUSE_DEPTH; e = e.cause) chain.push(e);
  return chain;
}

export type StorageFailureKind = 'full' | 'read_only' | 'not_writable';

/**
 * What `e`'s own code says of the storage it failed on: no room left (or
 * over quota), read-only, or not Kiln's to write (Kiln's own files are made
 * by Kiln: one it may not write means DATA_DIR's owner or mode changed
 * under it). Undefined for any other failure.
 */
export function storageFailureKind(e: Error): StorageFailureKind | undefined {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string') return undefined;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL') return 'full';
  if (code === 'EROFS' || code.startsWith('SQLITE_READONLY')) return 'read_only';
  if (code === 'EACCES' || code === 'EPERM') return 'not_writable';
  return undefined;
}
