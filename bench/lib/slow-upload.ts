/**
 * A multipart upload whose body trickles in: the file is written to the
 * socket in equal chunks spread over `seconds`, as a slow client would send
 * it, so many uploads can be in flight at the server together. node:http
 * directly, because fetch gives no control over the pace of a request body.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';

export interface SlowUploadResult {
  status: number;
  body: string;
  ms: number;
}

export function slowMultipartUpload(
  url: string,
  headers: Record<string, string>,
  file: { field: string; filename: string; type: string; data: Buffer },
  pace: { seconds: number; chunks: number; timeoutMs: number },
): Promise<SlowUploadResult> {
  const boundary = `----kilnbench${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="${file.field}"; filename="${file.filename}"\r\nContent-Type: ${file.type}\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      headers: { ...headers, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(head.length + file.data.length + tail.length) },
      timeout: pace.timeoutMs,
    });
    let timer: NodeJS.Timeout | undefined;
    const fail = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    req.on('timeout', () => req.destroy(new Error(`no answer within ${pace.timeoutMs} ms`)));
    req.on('error', fail);
    req.on('response', (res) => {
      clearTimeout(timer); // the server may answer (e.g. 413) before the body is all sent
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - started }));
      res.on('error', fail);
    });
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
  });
}
