/**
 * Failures of what a job stands on rather than of the job itself: the
 * database dropped the connection, is restarting or still starting, aborted
 * a transaction to break a deadlock, or (SQLite) stayed locked by another
 * process; a peer reset or refused a connection; the disk (or the SQLite
 * database) had no room left. None is a bug, and running
 * the job again later is the cure, so the runner retries them like a
 * TransientJobError (execute.ts) instead of failing the job as
 * `internal_error`. A module that decides something on the way out (free a
 * lease, fail a process) asks `outageOf` too, so it agrees with the runner.
 */
import { DatabaseBusy } from '../../errors.js';
import { isDatabaseConnectionLost } from '../db/failures.js';
import { causeChain, storageFailureKind } from '../failures.js';
import { JobError, TransientJobError } from './errors.js';

/**
 * PostgreSQL SQLSTATEs 40001 and 40P01 (serialization failure, deadlock: the
 * transaction was rolled back and may simply run again).
 */
const ROLLED_BACK_SQLSTATE = new Set(['40001', '40P01']);

/** A socket's errors: the peer went away, or cannot be reached for now. */
const NETWORK_ERRNO = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);


function isConnectionFailure(e: Error): boolean {
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && (ROLLED_BACK_SQLSTATE.has(code) || NETWORK_ERRNO.has(code))) return true;
  return isDatabaseConnectionLost(e);
}

/**
 * `err` (or one of its causes) as the transient job error it amounts to
 * when it is an outage, else undefined. The detail says what happened
 * without the internals; the runner logs the error itself.
 */
export function outageOf(err: unknown): TransientJobError | undefined {
  for (const e of causeChain(err)) {
    if (e instanceof JobError) return undefined; // the handler already said what it is
    if (e instanceof DatabaseBusy) return new TransientJobError('database_busy', 'The database stayed locked by another process.');
    if (isConnectionFailure(e)) return new TransientJobError('service_unavailable', 'A service the job needs (its database or storage) could not be reached.');
    // A full disk or database: freed space is the cure, so it is worth trying again later.
    if (storageFailureKind(e) === 'full') return new TransientJobError('storage_full', 'The server had no room left to store what the job made.');
  }
  return undefined;
}
