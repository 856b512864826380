/**
 * One connection the front door reads (front-door.ts says which requests it
 * takes, and why). It answers on the socket the whole requests a hot path
 * takes, stops reading while a hot path loads what a request needs or while
 * the client leaves answers unread, and hands the connection to Node at the
 * first request it does not answer.
 */
import type { Socket } from 'node:net';
import { afterRequestId, headerLines, httpDate } from './answer-head.js';
import type { FrontDoor } from './front-door.js';
import type { HotAnswer } from './hot-path.js';
import { parseHead } from './request-head.js';

/** "GET " as the first four bytes of a read, big-endian. */
const GET_ = 0x47455420;
/** A longer head is left to Node (its own limit is 16 KiB). */
const MAX_HEAD = 8 * 1024;
/** Answers waiting to be sent beyond this stop the reading until the client takes them. */
const MAX_UNSENT = 256 * 1024;

export class FrontDoorConnection {
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
        // A request is in progress now: the server's idle timeout applies, not the keep-alive one between
        // requests, as in Node's own handling. A slow store would otherwise cut the wait off with no answer.
        this.socket.setTimeout(this.door.server.timeout);
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
  private readonly onLoaded = (): void => {
    this.socket.setTimeout(this.door.server.keepAliveTimeout);
    this.goOn(false);
  };

  private readonly onEnd = (): void => {
    // The client sent all it will: finish sending our answers, then close; once what a request waits on
    // (a load, a client reading slowly) is answered, when there is such a request.
    this.closeWhenIdle();
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
