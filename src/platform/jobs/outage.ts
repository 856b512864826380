/**
 * Failures of what a job stands on rather than of the job itself: the
 * database dropped the connection, is restarting or still starting, aborted
 * a transaction to break a deadlock, or (SQLite) stayed locked by another
 * process; a peer reset or refused a connection. None is a bug, and running
 * the job again later is the cure, so the runner retries them like a
 * TransientJobError (execute.ts) instead of failing the job as
 * `internal_error`. A module that decides something on the way out (free a
 * lease, fail a process) asks `outageOf` too, so it agrees with the runner.
 */
import { DatabaseBusy } from '../../errors.js';
import { JobError, TransientJobError } from './errors.js';

/**
 * PostgreSQL SQLSTATEs: class 08 (connection exception), 57P01-57P03 (admin
 * shutdown, crash shutdown, cannot connect now), 40001 and 40P01
 * (serialization failure, deadlock: the transaction was rolled back and may
 * simply run again), 53300 (too many connections).
 */
const RETRYABLE_SQLSTATE = /^(08[0-9A-Z]{3}|57P0[123]|40001|40P01|53300)$/;

/** A socket's errors: the peer went away, or cannot be reached for now. */
const NETWORK_ERRNO = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** pg's own errors for a connection lost or not made, which carry no code. */
const PG_CONNECTION_LOST = /^(Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect)/;

/** How deep into `cause` to look: Kysely and Kiln wrap at most a couple of times. */
const CAUSE_DEPTH = 4;

function isConnectionFailure(e: Error): boolean {
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && (RETRYABLE_SQLSTATE.test(code) || NETWORK_ERRNO.has(code))) return true;
  return PG_CONNECTION_LOST.test(e.message);
}

/**
 * `err` (or one of its causes) as the transient job error it amounts to
 * when it is an outage, else undefined. The detail says what happened
 * without the internals; the runner logs the error itself.
 */
export function outageOf(err: unknown): TransientJobError | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < CAUSE_DEPTH; e = e.cause, depth++) {
    if (e instanceof JobError) return undefined; // the handler already said what it is
    if (e instanceof DatabaseBusy) return new TransientJobError('database_busy', 'The database stayed locked by another process.');
    if (isConnectionFailure(e)) return new TransientJobError('service_unavailable', 'A service the job needs (its database or storage) could not be reached.');
  }
  return undefined;
}
