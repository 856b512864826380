/**
 * An undici interceptor through which every safeFetch answer arrives: its
 * body is counted against the byte cap as it comes off the socket, and the
 * HTTP parser is never paused for a slow reader.
 *
 * Why never paused: undici 7 crashes the whole process when the server
 * closes a `Connection: close` answer while the parser is paused for
 * back-pressure (an AssertionError, `assert(!this.paused)`, thrown from the
 * socket's 'end' handler, where nothing can catch it; nodejs/undici#5360,
 * fixed only in undici 8, which needs Node 22). A download written to disk
 * more slowly than the loopback delivers it paused the parser often enough
 * that four concurrent product-image downloads ended `kiln serve` on the
 * first try. So pause() is ignored: the answer's readable buffers what the
 * reader has not taken yet, and the cap, counted here on arrival rather than
 * as the reader takes it, bounds that buffer at `maxBytes` per answer.
 */
import type { Dispatcher } from 'undici';
import { FetchError } from './errors.js';

type Handler = Dispatcher.DispatchHandler;
type Controller = Dispatcher.DispatchController;

export function tooLarge(maxBytes: number): FetchError {
  return new FetchError('too_large', `The answer is larger than ${maxBytes} bytes.`);
}

/** The interceptor for one request whose answer may hold at most `maxBytes` bytes of body. */
export function arrivalCap(maxBytes: number): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (options, handler) => dispatch(options, new ArrivalCapHandler(handler, maxBytes));
}

class ArrivalCapHandler implements Handler {
  private bytes = 0;
  private controller: Controller | undefined;
  private unpausable: Controller | undefined;

  constructor(
    private readonly inner: Handler,
    private readonly maxBytes: number,
  ) {}

  /**
   * The same controller, but its pause() does nothing (see the module's
   * comment). undefined stays undefined: a request that fails before it
   * connects reports its error with no controller.
   */
  private view(controller: Controller): Controller {
    if (controller === undefined || controller === this.controller) return this.unpausable ?? controller;
    this.controller = controller;
    this.unpausable = {
      get aborted() {
        return controller.aborted;
      },
      get paused() {
        return false;
      },
      get reason() {
        return controller.reason;
      },
      abort: (reason) => controller.abort(reason),
      pause: () => undefined,
      resume: () => controller.resume(),
    };
    return this.unpausable;
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.bytes = 0; // a request retried on a new connection starts its count again
    this.inner.onRequestStart?.(this.view(controller), context);
  }

  onRequestUpgrade(controller: Controller, statusCode: number, headers: Parameters<NonNullable<Handler['onRequestUpgrade']>>[2], socket: Parameters<NonNullable<Handler['onRequestUpgrade']>>[3]): void {
    this.inner.onRequestUpgrade?.(this.view(controller), statusCode, headers, socket);
  }

  onResponseStart(controller: Controller, statusCode: number, headers: Parameters<NonNullable<Handler['onResponseStart']>>[2], statusMessage?: string): void {
    this.inner.onResponseStart?.(this.view(controller), statusCode, headers, statusMessage);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      controller.abort(tooLarge(this.maxBytes));
      return;
    }
    this.inner.onResponseData?.(this.view(controller), chunk);
  }

  onResponseEnd(controller: Controller, trailers: Parameters<NonNullable<Handler['onResponseEnd']>>[1]): void {
    this.inner.onResponseEnd?.(this.view(controller), trailers);
  }

  onResponseError(controller: Controller, error: Error): void {
    this.inner.onResponseError?.(this.view(controller), error);
  }
}
