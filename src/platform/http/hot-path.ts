/**
 * Hot paths: the few requests that are answered on Node's HTTP server before
 * Fastify sees them. A public thumbnail is fetched far more often than
 * anything else, and routing, schema validation, hooks and the reply object
 * cost more than the answer itself (docs/performance.md, "Serving"). A hot
 * path answers only what it can answer exactly as the Fastify route would
 * (so far: stored images, with the image answer's security headers),
 * from memory and without I/O; for anything else (another method, a header
 * it does not handle, a cache miss) it declines and Fastify answers. Each
 * answer still carries the security headers and request id, and is counted
 * and logged like every other (requests.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestRecorder } from './requests.js';

/** Answers the request and returns true, or returns false without touching `res`. */
export type HotPath = (req: IncomingMessage, res: ServerResponse, answer: HotAnswer) => boolean;

export class HotAnswer {
  /** When the request being answered reached the hot paths (they answer synchronously, one at a time). */
  started = 0;

  constructor(private readonly recorder: RequestRecorder) {}

  /** Writes a whole image answer: `headers` as [name, value, …] after the common ones, then `body` (none for 304). */
  send(req: IncomingMessage, res: ServerResponse, route: string, status: number, headers: readonly string[], body?: Buffer): void {
    const reqId = this.recorder.requestId(req);
    res.writeHead(status, [...this.recorder.mediaHeaderList, 'x-request-id', reqId, ...headers]);
    res.end(body);
    this.recorder.record(reqId, req.method ?? 'GET', route, req.url ?? '', status, performance.now() - this.started);
  }
}

export class HotPaths {
  private readonly paths: HotPath[] = [];
  private readonly answer: HotAnswer;
  /** Requests a hot path answered, since start. */
  answered = 0;

  constructor(recorder: RequestRecorder) {
    this.answer = new HotAnswer(recorder);
  }

  add(path: HotPath): void {
    this.paths.push(path);
  }

  /** True when a hot path answered; otherwise the request is Fastify's. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    this.answer.started = performance.now();
    for (const path of this.paths) {
      if (path(req, res, this.answer)) {
        this.answered += 1;
        return true;
      }
    }
    return false;
  }
}
