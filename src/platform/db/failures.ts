/**
 * Errors that say the database went away under a query, not that the query
 * or the data were wrong: the server dropped the connection, is shutting
 * down, restarting or still starting, or has no connection slot left.
 * Running the same work again later is the cure, so the HTTP layer answers
 * them 503 and the job runner retries them (jobs/outage.ts).
 */

/**
 * PostgreSQL SQLSTATEs: class 08 (connection exception), 57P01-57P03 (admin
 * shutdown, crash shutdown, cannot connect now), 53300 (too many connections).
 */
const LOST_SQLSTATE = /^(08[0-9A-Z]{3}|57P0[123]|53300)$/;

/** pg's own errors for a connection lost or not made, which carry no code. */
const PG_CONNECTION_LOST = /^(Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect)/;

/**
 * A new connection to the database could not be opened: refused, timed out,
 * its name did not resolve, the server turned it away. The pool throws this
 * with the cause (db/index.ts), so that a refused connection reads as the
 * database's outage, not as any other refused connection (an outbound
 * request's). Its message is the cause's.
 */
export class DatabaseUnreachable extends Error {
  constructor(cause: unknown) {
    const code = (cause as { code?: unknown } | null)?.code;
    // Node's AggregateError (one refusal per address of a name) has no message of its own: its code says it.
    const message = cause instanceof Error && cause.message ? cause.message : typeof code === 'string' ? code : String(cause);
    super(message, { cause });
    this.name = 'DatabaseUnreachable';
  }
}

/** `e` itself (not its causes) says the database connection was lost or could not be had. */
export function isDatabaseConnectionLost(e: Error): boolean {
  if (e instanceof DatabaseUnreachable) return true;
  const code = (e as { code?: unknown }).code;
  return (typeof code === 'string' && LOST_SQLSTATE.test(code)) || PG_CONNECTION_LOST.test(e.message);
}
