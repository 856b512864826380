/**
 * What every answer carries and how every answer is counted, in one place
 * for both ways a request is answered: Fastify's hooks (app.ts) and the hot
 * paths that answer on Node's server before Fastify (hot-path.ts). A
 * request id (the caller's X-Request-Id when it is safe to log, otherwise a
 * new one), the security headers, one metrics sample and one access line.
 */
import type { Logger } from 'pino';
import { RequestIds } from '../../ids.js';
import { createAccessLogger, scrubString } from '../log/index.js';
import type { Metrics } from '../metrics/index.js';
import type { HotHeaders } from './hot-path.js';
import { mediaSecurityHeaders, securityHeaders } from './security.js';

const REQUEST_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

/** The `route` of a request that matched no route, in the access log and in metrics. */
export const UNMATCHED = 'unmatched';

/** The status logged for a request whose client closed the connection before any answer was sent (nginx's 499). */
export const CLIENT_CLOSED_REQUEST = 499;

export class RequestRecorder {
  private readonly ids = new RequestIds();
  private readonly access: Logger;
  /** Helmet's headers, computed once: as an object for Fastify's reply.headers(). */
  readonly securityHeaders: Readonly<Record<string, string>> = securityHeaders();
  /** An image answer's security headers, flattened as [name, value, …], the cheapest form for res.writeHead(). */
  readonly mediaHeaderList: readonly string[] = Object.entries(mediaSecurityHeaders(this.securityHeaders)).flat();

  constructor(
    log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.access = createAccessLogger(log);
  }

  requestId(req: { readonly headers: HotHeaders }): string {
    const given = req.headers['x-request-id'];
    return typeof given === 'string' && REQUEST_ID.test(given) ? given : this.ids.next();
  }

  /** A new id, for an answer to something that never became a request (not valid HTTP). */
  newRequestId(): string {
    return this.ids.next();
  }

  /**
   * One metrics sample and, at level info, one access line with what an
   * operator needs and nothing secret. `aborted`: the connection closed
   * before the answer was complete.
   */
  record(reqId: string, method: string, route: string, url: string, status: number, ms: number, aborted = false): void {
    this.metrics.http.series(method, route, status).observe(ms / 1000);
    if (this.access.isLevelEnabled('info')) {
      const path = scrubString(url.split('?', 1)[0] ?? '');
      const line = { reqId, method, route, url: path, status, ms: Math.round(ms * 10) / 10 };
      this.access.info(aborted ? { ...line, aborted } : line, 'request');
    }
  }
}
