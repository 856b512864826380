import net from 'node:net';

/** One HTTP/1.1 answer as it came off the wire. */
export interface RawAnswer {
  status: number;
  /** The head as sent: status line and header lines, without the blank line. */
  head: string;
  /** Lower-case names; a repeated header keeps its last value. */
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * A plain TCP connection to a server, for what fetch cannot do: send bytes
 * exactly as written (pipelined requests, a head cut in two, malformed
 * lines) and read the answers exactly as sent.
 */
export class RawConnection {
  private received = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  /** True once the server ended or closed the connection. */
  ended = false;
  private readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
      this.waiting?.();
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.once('end', () => {
      this.ended = true;
      this.waiting?.();
    });
    socket.on('error', () => undefined);
  }

  static async open(url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port), hostname);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawConnection(socket);
  }

  send(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** The next `n` whole answers (a 304 and a 204 have no body; every other one here has a Content-Length). */
  async answers(n: number, timeoutMs = 5000): Promise<RawAnswer[]> {
    const out: RawAnswer[] = [];
    const deadline = Date.now() + timeoutMs;
    while (out.length < n) {
      const answer = this.take();
      if (answer) {
        out.push(answer);
        continue;
      }
      if (this.ended) throw new Error(`connection ended after ${out.length} of ${n} answers`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${out.length} of ${n} answers`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiting = null;
    }
    return out;
  }

  /** Bytes received and not yet taken as answers. */
  get pending(): number {
    return this.received.length;
  }

  private take(): RawAnswer | null {
    const end = this.received.indexOf('\r\n\r\n');
    if (end === -1) return null;
    const head = this.received.subarray(0, end).toString('latin1');
    const [statusLine, ...lines] = head.split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number((statusLine ?? '').split(' ')[1]);
    const length = status === 304 || status === 204 ? 0 : Number(headers['content-length'] ?? 0);
    if (this.received.length < end + 4 + length) return null;
    const body = Buffer.from(this.received.subarray(end + 4, end + 4 + length));
    this.received = this.received.subarray(end + 4 + length);
    return { status, head, headers, body };
  }

  /**
   * Resolves when the connection is closed, however long that takes. A test
   * that waits so gives the server a keep-alive timeout far past the test's
   * own (Node's default is 5 s): a connection the server should have closed
   * and did not then fails the test by timing it out, not by a measured duration.
   */
  whenClosed(): Promise<void> {
    return this.closed;
  }

  /** Resolves when the connection is closed, or rejects after `timeoutMs`. */
  async closedWithin(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still open after ${timeoutMs} ms`)), timeoutMs)));
    try {
      await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A GET head as a client writes it, CRLF line ends and the blank line included. */
export function getRequest(pathAndQuery: string, headers: Record<string, string> = {}, host = 'kiln.test'): string {
  const lines = [`GET ${pathAndQuery} HTTP/1.1`, `Host: ${host}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return `${lines.join('\r\n')}\r\n\r\n`;
}
