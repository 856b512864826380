/**
 * Hot paths: the few requests that are answered before Fastify sees them. A
 * public thumbnail is fetched far more often than anything else, and
 * routing, schema validation, hooks and the reply object cost more than the
 * answer itself (docs/performance.md, "Serving"). A hot path answers only
 * what it can answer exactly as the Fastify route would (so far: stored
 * images, with the image answer's security headers), from memory; for
 * anything else (another method, a header it does not handle, an image it
 * cannot load) it declines and Fastify answers. What is not in memory it
 * loads only for the front door, which can wait without Node's request and
 * response objects; a request Node read goes to the route on a cache miss,
 * and the route fills the caches. Each answer still
 * carries the security headers and request id, and is counted and logged
 * like every other (requests.ts).
 *
 * A hot path only decides the answer (a HotReply). It is written either on
 * the socket by the front door (front-door.ts), for requests it read
 * itself, or through Node's ServerResponse, for requests Node's HTTP parser
 * read (a connection the front door handed over).
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { RequestRecorder } from './requests.js';

/**
 * The request headers a hot path may look at, and the only ones the front
 * door keeps of a request it reads: a hot path that must see another header
 * (to answer by it, or to decline because of it) adds it here, and the
 * compiler then lets it read it.
 */
export const HOT_HEADERS = ['authorization', 'x-api-key', 'range', 'if-range', 'origin', 'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'x-request-id'] as const;
export type HotHeader = (typeof HOT_HEADERS)[number];
/** Typed as Node types them. */
export type HotHeaders = { readonly [name in HotHeader]?: IncomingHttpHeaders[name] };

/** What a hot path looks at: Node's IncomingMessage has it, and so does the front door's parsed request. */
export interface HotRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  /** Lower-case names, as Node gives them. */
  readonly headers: HotHeaders;
}

/** A whole answer: the status, its headers as [name, value, …] (after the common ones), and the body (none for 304). */
export interface HotReply {
  /** The route it stands for, in metrics and logs. */
  readonly route: string;
  readonly status: 200 | 304;
  readonly headers: readonly string[];
  readonly body?: Buffer | undefined;
}

/**
 * The answer to `req`, or null to leave the request to Fastify. When
 * `canWait` is true (the front door read the request) and what the answer
 * needs is not in memory yet, a hot path may instead start loading it and
 * return that promise: the request is asked again once it settles, and then
 * must be answered or declined.
 */
export type HotPath = (req: HotRequest, canWait: boolean) => HotReply | Promise<void> | null;

/** A hot path's answer and its request id. Written, it carries the common headers, then x-request-id, then the reply's own. */
export interface HotAnswer {
  readonly reqId: string;
  readonly reply: HotReply;
}

export class HotPaths {
  private readonly paths: HotPath[] = [];
  /** Requests a hot path answered, since start. */
  answered = 0;

  constructor(private readonly recorder: RequestRecorder) {}

  /** The headers every answer starts with (an image answer's security headers), [name, value, …]. */
  get commonHeaders(): readonly string[] {
    return this.recorder.mediaHeaderList;
  }

  add(path: HotPath): void {
    this.paths.push(path);
  }

  /** How many hot paths there are: with none, there is nothing to answer early. */
  get size(): number {
    return this.paths.length;
  }

  /**
   * The answer of the first hot path that takes `req`; null when the request
   * is Fastify's; or, when `canWait`, a promise of what a hot path is
   * loading for it (ask again once it settles, with `canWait` false).
   */
  answer(req: HotRequest, canWait: boolean): HotAnswer | Promise<void> | null {
    for (const path of this.paths) {
      const reply = path(req, canWait);
      if (reply === null) continue;
      if (reply instanceof Promise) {
        if (canWait) return reply;
        continue;
      }
      this.answered += 1;
      return { reqId: this.recorder.requestId(req), reply };
    }
    return null;
  }

  /** Counts and logs an answer once it is written: `started` is performance.now() when the request was read. */
  record(req: HotRequest, answer: HotAnswer, started: number): void {
    this.recorder.record(answer.reqId, req.method ?? 'GET', answer.reply.route, req.url ?? '', answer.reply.status, performance.now() - started);
  }

  /** For a request Node's parser read: answers it through `res` and returns true, or returns false without touching `res`. */
  handle(req: HotRequest, res: ServerResponse): boolean {
    const started = performance.now();
    // The route loads whatever is missing, and fills the caches as it does.
    const answer = this.answer(req, false);
    if (!answer || answer instanceof Promise) return false;
    res.writeHead(answer.reply.status, [...this.commonHeaders, 'x-request-id', answer.reqId, ...answer.reply.headers]);
    res.end(answer.reply.body);
    this.record(req, answer, started);
    return true;
  }
}
