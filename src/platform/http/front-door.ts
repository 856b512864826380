/**
 * The front door: Kiln's HTTP server reads the requests of a new connection
 * itself and answers those a hot path takes (hot-path.ts) straight on the
 * socket. At the first request it does not answer, it hands the connection,
 * with every byte not yet answered, to Node's HTTP server, which serves it
 * from then on exactly as if it had read it from the start. Each connection
 * it reads is a FrontDoorConnection (front-door-connection.ts), which writes
 * its answers' heads with answer-head.ts.
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
 * keep-alive timeout between requests and its idle timeout while a load is
 * waited on, stops reading while a client leaves more than
 * 256 KiB of answers unread, and closes its connections when the server
 * closes.
 */
import { Server, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { closeQueuedWithConnection } from './pipelined.js';
import { headerLines } from './answer-head.js';
import { FrontDoorConnection } from './front-door-connection.js';
import type { HotPaths } from './hot-path.js';

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

/**
 * Node's HTTP server with the front door before it: every new connection
 * goes through the front door first, and closing the server closes the
 * connections the front door holds, as Node closes its own.
 */
export class KilnServer extends Server<typeof IncomingMessage, typeof ServerResponse> {
  readonly frontDoor: FrontDoor;

  constructor(hotPaths: HotPaths, handler: (req: IncomingMessage, res: ServerResponse) => void) {
    // An HTTP/1.1 request without Host reaches the handler, which answers it as problem+json (errors.ts, refuseBadHost).
    super({ requireHostHeader: false }, (req, res) => {
      closeQueuedWithConnection(req, res);
      handler(req, res);
    });
    const [nodeConnection] = this.listeners('connection') as Array<(socket: Socket) => void>;
    if (!nodeConnection) throw new Error("Node's HTTP server has no connection listener");
    this.removeListener('connection', nodeConnection);
    this.frontDoor = new FrontDoor(this, hotPaths, (socket) => nodeConnection.call(this, socket));
    this.on('connection', (socket: Socket) => this.frontDoor.accept(socket));
    // A client that sends its request and then closes its side (`nc -N`, some proxies) still gets its answer:
    // Node would otherwise abort the request and end the socket at that FIN, answering only what it had answered
    // synchronously. Node's own property (not in its type definitions): the answers pending go, then the socket ends.
    (this as unknown as { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
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
