/**
 * Typed domain errors. Services throw these; the one error handler in
 * `app.ts` turns them into problem+json (or a module's own envelope).
 * `code` is the stable machine string clients switch on.
 */
export class DomainError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
    /** Extra members for the problem body, such as the failing fields of a 422. */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail);
    this.name = new.target.name;
  }

  get detail(): string {
    return this.message;
  }
}

export class BadRequest extends DomainError {
  constructor(detail: string, code = 'bad_request', extra?: Record<string, unknown>) {
    super(400, code, detail, extra);
  }
}

export class Unauthorized extends DomainError {
  constructor(detail = 'Missing or invalid credentials.', code = 'unauthorized') {
    super(401, code, detail);
  }
}

export class Forbidden extends DomainError {
  constructor(detail = 'You are not allowed to do this.', code = 'forbidden') {
    super(403, code, detail);
  }
}

export class NotFound extends DomainError {
  constructor(detail = 'Not found.', code = 'not_found') {
    super(404, code, detail);
  }
}

export class Conflict extends DomainError {
  constructor(detail: string, code = 'conflict') {
    super(409, code, detail);
  }
}

export class TooLarge extends DomainError {
  constructor(detail: string, code = 'file_too_large') {
    super(413, code, detail);
  }
}

export class UnsupportedImage extends DomainError {
  constructor(detail: string, code = 'unsupported_image') {
    super(415, code, detail);
  }
}

export interface FieldError {
  field: string;
  message: string;
}

export class ValidationFailed extends DomainError {
  constructor(detail: string, errors: FieldError[] = [], code = 'validation_error') {
    super(422, code, detail, { errors });
  }
}

export class TooManyRequests extends DomainError {
  constructor(
    readonly retryAfterSeconds: number,
    detail = 'Too many requests; try again later.',
  ) {
    super(429, 'rate_limited', detail);
  }
}

export class ServiceUnavailable extends DomainError {
  constructor(detail: string, code = 'service_unavailable') {
    super(503, code, detail);
  }
}

/**
 * Another process has held the SQLite database's write lock for longer than
 * a write waits: a 503 the client may retry (another `kiln` process in a
 * long write, or a tool with an open transaction on the file).
 */
export class DatabaseBusy extends ServiceUnavailable {
  readonly retryAfterSeconds = 1;

  constructor(waitedMs: number, options?: { cause: unknown }) {
    super(`The database is busy: another process has held its write lock for ${Math.round(waitedMs / 1000)} s. Try again shortly.`, 'database_busy');
    if (options) this.cause = options.cause;
  }
}

/** A command line the `kiln` CLI cannot run: main.ts prints the message and exits with 1. */
export class UsageError extends Error {}
