/**
 * `Expect: 100-continue`: the client sends its body only once the server
 * says so. Node says so at once, before any route has looked at the request,
 * so an upload without credentials was asked for its whole body and then
 * refused (401). Kiln says so when the body is first read (a JSON parser, a
 * multipart upload's first part): a request refused before that (no
 * credentials, over a rate limit, a project that is someone else's) gets its
 * answer at once, and no body is asked for (drain.ts reads none out; the
 * connection is closed after the answer, since the client may still send its
 * body on its own after a wait).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Requests whose `100 Continue` has not been sent yet. */
const withheld = new WeakSet<IncomingMessage>();

/**
 * For the server's `checkContinue` event: the request is handled as any
 * other, its 100 held back until its body is first read. Readable's `_read`
 * is where any reader (a listener, a pipe, an iterator) asks for bytes.
 */
export function withholdContinue(req: IncomingMessage, res: ServerResponse): void {
  withheld.add(req);
  const read = req._read;
  req._read = function readAfterContinue(this: IncomingMessage, size: number): void {
    grantContinue(req, res);
    req._read = read;
    read.call(this, size);
  };
}

/** The body is about to be read: the client is told to send it. */
function grantContinue(req: IncomingMessage, res: ServerResponse): void {
  if (!withheld.delete(req)) return;
  if (!res.headersSent && !res.writableEnded) res.writeContinue();
}

/** The client was never told to send its body: there is none to read out. */
export function continueWithheld(req: IncomingMessage): boolean {
  return withheld.has(req);
}
