/**
 * Multipart uploads for the benches, with node:http directly.
 *
 * - MultipartUpload: one file framed once, then sent as often as asked with
 *   a single write: a load generator's own cost stays out of the server's
 *   figures (fetch with FormData frames the body anew each time, ~2.6 ms more
 *   per 0.9 MB upload here, measured with the two alternating).
 * - slowMultipartUpload: a body that trickles in, in equal chunks spread over
 *   `seconds`, as a slow client would send it, so many uploads can be in
 *   flight at the server together (fetch gives no control over the pace).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';

export interface UploadFile {
  field: string;
  filename: string;
  type: string;
  data: Buffer;
}

export interface UploadResult {
  status: number;
  body: string;
  ms: number;
}

/** The bytes around the file in a multipart/form-data body of one file field. */
function frame(file: UploadFile): { head: Buffer; tail: Buffer; contentType: string } {
  const boundary = `----kilnbench${randomBytes(8).toString('hex')}`;
  return {
    head: Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${file.field}"; filename="${file.filename}"\r\nContent-Type: ${file.type}\r\n\r\n`),
    tail: Buffer.from(`\r\n--${boundary}--\r\n`),
    contentType: `multipart/form-data; boundary=${boundary}`,
  };
}

/** Collects the answer of `req`; `onResponse` runs when its head arrives. */
function answer(req: http.ClientRequest, started: number, onResponse: () => void = () => undefined): Promise<UploadResult> {
  return new Promise((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      onResponse();
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - started }));
      res.on('error', reject);
    });
  });
}

/** One file, framed once, uploaded over kept-alive connections (as many at once as `connections`). */
export class MultipartUpload {
  private readonly body: Buffer;
  private readonly headers: Record<string, string>;
  private readonly agent: http.Agent;

  constructor(
    private readonly url: string,
    headers: Record<string, string>,
    file: UploadFile,
    connections: number,
  ) {
    const { head, tail, contentType } = frame(file);
    this.body = Buffer.concat([head, file.data, tail]);
    this.headers = { ...headers, 'content-type': contentType, 'content-length': String(this.body.length) };
    this.agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  }

  send(): Promise<UploadResult> {
    const started = performance.now();
    const req = http.request(this.url, { method: 'POST', headers: this.headers, agent: this.agent });
    const answered = answer(req, started);
    req.end(this.body);
    return answered;
  }

  close(): void {
    this.agent.destroy();
  }
}

export function slowMultipartUpload(url: string, headers: Record<string, string>, file: UploadFile, pace: { seconds: number; chunks: number; timeoutMs: number }): Promise<UploadResult> {
  const { head, tail, contentType } = frame(file);
  const started = performance.now();
  const req = http.request(url, {
    method: 'POST',
    headers: { ...headers, 'content-type': contentType, 'content-length': String(head.length + file.data.length + tail.length) },
    timeout: pace.timeoutMs,
  });
  let timer: NodeJS.Timeout | undefined;
  // The server may answer (e.g. 413) before the body is all sent.
  const answered = answer(req, started, () => clearTimeout(timer));
  req.on('timeout', () => req.destroy(new Error(`no answer within ${pace.timeoutMs} ms`)));
  req.on('error', () => clearTimeout(timer));
  const size = Math.ceil(file.data.length / pace.chunks);
  const interval = (pace.seconds * 1000) / pace.chunks;
  let sent = 0;
  req.write(head);
  const next = (): void => {
    if (req.destroyed) return;
    const chunk = file.data.subarray(sent, sent + size);
    sent += chunk.length;
    if (sent >= file.data.length) {
      req.end(Buffer.concat([chunk, tail]));
      return;
    }
    req.write(chunk);
    timer = setTimeout(next, interval);
  };
  next();
  return answered;
}
