/**
 * The front door: Kiln's HTTP server reads the requests of a new connection
 * itself and answers those a hot path takes (hot-path.ts) straight on the
 * socket. At the first request it does not answer, it hands the connection,
 * with every byte not yet answered, to Node's HTTP server, which serves it
 * from then on exactly as if it had read it from the start.
 *
 * Why: Node's HTTP machinery (the parser's request object, the response
 * stream, their events and ticks) costs far more than a hot path's answer:
 * a cached thumbnail's 304 took ~140k instructions through it and takes
 * ~71k through the front door, against ~55k for a bare Node server
 * answering a fixed 304 (docs/performance.md, "Fourth round").
 *
 * What it reads itself is deliberately narrow, and everything else is
 * Node's: only whole request heads that arrived complete, at most 8 KiB,
 * `GET /… HTTP/1.1` with CRLF line ends, a Host, printable ASCII header
 * lines without folding, neither Host nor a header a hot path reads given
 * twice, and nothing that frames a body or
 * changes the connection (Content-Length, Transfer-Encoding, Expect,
 * Upgrade, TE, a Connection other than keep-alive). A head cut across two
 * reads, an HTTP/1.0 client, a POST, or a request no hot path answers
 * hands the connection over at once. So the front door never waits for
 * bytes, keeps no partial request, and never answers an error itself:
 * Node's limits and timeouts and its 400s apply to everything it did not
 * answer. When a hot path has to load what a request needs (an image row
 * that left the cache), the front door stops reading the connection until
 * it has, then answers or hands over, in order: so a cache miss does not
 * send the connection to Node for good.
 *
 * It answers byte for byte what Node writes for the same answer (the same
 * header lines, then Date, Connection and Keep-Alive), keeps the server's
 * keep-alive timeout, stops reading while a client leaves more than
 * 256 KiB of answers unread, and closes its connections when the server
 * closes.
 */
import { Server, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { HotAnswer, HotPaths } from './hot-path.js';
import { parseHead } from './request-head.js';

/** "GET " as the first four bytes of a read, big-endian. */
const GET_ = 0x47455420;
/** A longer head is left to Node (its own limit is 16 KiB). */
const MAX_HEAD = 8 * 1024;
/** Answers waiting to be sent beyond this stop the reading until the client takes them. */
const MAX_UNSENT = 256 * 1024;

/** [name, value, …] as header lines. */
function headerLines(list: readonly string[]): string {
  let lines = '';
  for (let i = 0; i < list.length; i += 2) lines += `${list[i] as string}: ${list[i + 1] as string}\r\n`;
  return lines;
}

/** What follows the request id: a reply's header lines and the Date header's name, made once per header list (a hot path keeps one list per stored answer). */
const afterRequestId = new WeakMap<readonly string[], string>();

let dateSecond = -1;
let dateText = '';
/** The Date header's value, made once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

export class FrontDoor {
  /** Requests answered on the socket, and connections handed to Node, since start. */
  answered = 0;
  handedOver = 0;
  /** Times a connection stopped reading because its client left too many answers unread. */
  pauses = 0;
  /** Times a connection waited for a hot path to load what a request needed. */
  loads = 0;
  private readonly open = new Set<FrontDoorConnection>();
  /** Each status line with the common header lines after it, up to the request id's value. */
  readonly head200: string;
  readonly head304: string;

  constructor(
    readonly server: Server,
    readonly hotPaths: HotPaths,
    /** Node's own 'connection' listener: it serves a connection from then on. */
    readonly nodeConnection: (socket: Socket) => void,
  ) {
    const common = `${headerLines(hotPaths.commonHeaders)}x-request-id: `;
    this.head200 = `HTTP/1.1 200 OK\r\n${common}`;
    this.head304 = `HTTP/1.1 304 Not Modified\r\n${common}`;
  }

  accept(socket: Socket): void {
    // Node counts requests per connection for this limit; the front door would not.
    if (this.hotPaths.size === 0 || (this.server.maxRequestsPerSocket ?? 0) > 0) {
      this.handOver(socket);
      return;
    }
    this.open.add(new FrontDoorConnection(this, socket));
  }

  handOver(socket: Socket, unread?: Buffer): void {
    this.handedOver += 1;
    this.nodeConnection(socket);
    // Node's parser reads the socket from now on; what was already read is given to it first, in order,
    // then what arrived while the front door had stopped reading, if it had.
    if (unread && unread.length > 0) socket.emit('data', unread);
    if (socket.isPaused()) socket.resume();
  }

  forget(connection: FrontDoorConnection): void {
    this.open.delete(connection);
  }

  /** Ends every connection the front door holds: at once, or once the request it waits on is answered. */
  closeIdle(): void {
    for (const connection of this.open) connection.closeWhenIdle();
  }

  closeAll(): void {
    for (const connection of this.open) connection.destroy();
  }
}

class FrontDoorConnection {
  private readonly keepAlive: string;
  /** What was read and not yet answered while the connection waits (for its client, or for a hot path's load). */
  private unread: Buffer | null = null;
  /** False once the connection is Node's, or closing. */
  private attached = true;
  /** The server is closing: end the connection once what it waits on is answered. */
  private closing = false;

  constructor(
    private readonly door: FrontDoor,
    private readonly socket: Socket,
  ) {
    const timeout = door.server.keepAliveTimeout;
    this.keepAlive = timeout > 0 ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(timeout / 1000)}\r\n\r\n` : 'Connection: keep-alive\r\n\r\n';
    socket.setTimeout(timeout);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('timeout', this.onTimeout);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.read(chunk, true);
  };

  /**
   * Answers the whole requests at the start of `bytes`, and hands the
   * connection over at the first other thing. It stops, keeping the rest,
   * while the client leaves too many answers unread or while a hot path
   * loads what a request needs (`firstCanWait` false: the first request was
   * waited for already, and is now answered or handed over).
   */
  private read(bytes: Buffer, firstCanWait: boolean): void {
    // An upload's first read is most of 64 KiB of body: no need to make a string of it to see it is not a GET.
    if (bytes.length < 4 || bytes.readUInt32BE(0) !== GET_) {
      this.handOver(bytes);
      return;
    }
    const text = bytes.toString('latin1');
    let start = 0;
    let loading: Promise<void> | null = null;
    this.socket.cork();
    try {
      while (start < text.length) {
        if (this.socket.writableLength > MAX_UNSENT) {
          this.unread = bytes.subarray(start);
          break;
        }
        const end = text.indexOf('\r\n\r\n', start);
        if (end === -1 || end - start > MAX_HEAD) break;
        const started = performance.now();
        const req = parseHead(text.slice(start, end));
        const answer = req && this.door.hotPaths.answer(req, start > 0 || firstCanWait);
        if (answer instanceof Promise) {
          loading = answer;
          this.unread = bytes.subarray(start);
          break;
        }
        if (!req || !answer) break;
        this.write(answer);
        this.door.hotPaths.record(req, answer, started);
        this.door.answered += 1;
        start = end + 4;
      }
    } finally {
      this.socket.uncork();
    }
    if (this.unread) {
      this.socket.pause();
      if (loading) {
        this.door.loads += 1;
        void loading.then(this.onLoaded, this.onLoaded);
      } else {
        // The client is not taking its answers: go on once it has.
        this.door.pauses += 1;
        this.socket.once('drain', this.onDrain);
      }
      return;
    }
    // latin1: one character per byte, so `start` is a byte offset too.
    if (start < text.length) this.handOver(bytes.subarray(start));
    else if (this.socket.isPaused()) this.socket.resume();
  }

  /** Goes on with what was read and kept. */
  private goOn(firstCanWait: boolean): void {
    const unread = this.unread;
    this.unread = null;
    if (unread && this.attached) this.read(unread, firstCanWait);
    if (this.closing && this.attached && !this.unread) this.close();
  }

  private readonly onDrain = (): void => this.goOn(true);
  private readonly onLoaded = (): void => this.goOn(false);

  private readonly onEnd = (): void => {
    // The client sent all it will: finish sending our answers, then close.
    this.socket.end();
  };

  private readonly onTimeout = (): void => {
    this.socket.destroy();
  };

  private readonly onError = (): void => {
    this.socket.destroy();
  };

  private readonly onClose = (): void => {
    this.attached = false;
    this.door.forget(this);
  };

  /** What Node writes for the same answer: status line, the headers in order, then Date, Connection and Keep-Alive. */
  private write(answer: HotAnswer): void {
    const { status, headers, body } = answer.reply;
    let afterId = afterRequestId.get(headers);
    if (afterId === undefined) afterRequestId.set(headers, (afterId = `\r\n${headerLines(headers)}Date: `));
    const head = status === 200 ? this.door.head200 : this.door.head304;
    this.socket.write(`${head}${answer.reqId}${afterId}${httpDate()}\r\n${this.keepAlive}`, 'latin1');
    if (body) this.socket.write(body);
  }

  private detach(): void {
    this.attached = false;
    const s = this.socket;
    s.removeListener('data', this.onData);
    s.removeListener('end', this.onEnd);
    s.removeListener('timeout', this.onTimeout);
    s.removeListener('error', this.onError);
    s.removeListener('close', this.onClose);
    s.removeListener('drain', this.onDrain);
    s.setTimeout(0);
    this.door.forget(this);
  }

  private handOver(unread: Buffer): void {
    this.detach();
    this.door.handOver(this.socket, unread);
  }

  closeWhenIdle(): void {
    if (this.unread) this.closing = true;
    else this.close();
  }

  /** Sends what is queued, then closes. */
  close(): void {
    this.detach();
    // Still listening for errors: nothing else is, now.
    this.socket.on('error', () => this.socket.destroy());
    this.socket.end(() => this.socket.destroy());
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * Node's HTTP server with the front door before it: every new connection
 * goes through the front door first, and closing the server closes the
 * connections the front door holds, as Node closes its own.
 */
export class KilnServer extends Server<typeof IncomingMessage, typeof ServerResponse> {
  readonly frontDoor: FrontDoor;

  constructor(hotPaths: HotPaths, handler: (req: IncomingMessage, res: ServerResponse) => void) {
    super(handler);
    const [nodeConnection] = this.listeners('connection') as Array<(socket: Socket) => void>;
    if (!nodeConnection) throw new Error("Node's HTTP server has no connection listener");
    this.removeListener('connection', nodeConnection);
    this.frontDoor = new FrontDoor(this, hotPaths, (socket) => nodeConnection.call(this, socket));
    this.on('connection', (socket: Socket) => this.frontDoor.accept(socket));
  }

  override closeIdleConnections(): void {
    super.closeIdleConnections();
    this.frontDoor.closeIdle();
  }

  override closeAllConnections(): void {
    super.closeAllConnections();
    this.frontDoor.closeAll();
  }
}
