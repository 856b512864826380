/**
 * Pipelined requests whose connection closes before their turn. Node's HTTP
 * server queues the response of a request that arrives while an earlier one
 * on its connection is still being answered, and gives it the socket when its
 * turn comes. When the connection closes first, Node 20 destroys the queued
 * requests but never closes their responses (fixed upstream in
 * nodejs/node#62534, not in Node 20): a file a handler is piping into one
 * stays open, with its buffers, for as long as the process runs. A client
 * that pipelined 1000 GETs of a large image and hung up left 1000 open files
 * behind, on every try.
 *
 * closeQueuedWithConnection closes such a response as Node closes one that
 * holds the socket: destroyed, then 'close', which ends whatever is being
 * piped into it. A handler that reaches the response after that finds the
 * request destroyed (images/serve.ts looks before it opens a file).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Per connection, its responses still waiting for their turn. */
const waiting = new WeakMap<Socket, Set<ServerResponse>>();

/** Call with every request as it arrives: a response queued behind another is closed with its connection. */
export function closeQueuedWithConnection(req: IncomingMessage, res: ServerResponse): void {
  // A response that holds the socket is Node's to close; only a queued one has none yet.
  if (res.socket) return;
  const socket = req.socket;
  let queued = waiting.get(socket);
  if (!queued) {
    const responses = new Set<ServerResponse>();
    queued = responses;
    waiting.set(socket, responses);
    socket.once('close', () => {
      for (const response of responses) {
        // A Node that closes them itself (nodejs/node#62534) has done so already.
        if (response.destroyed) continue;
        response.destroy();
        response.emit('close');
      }
      responses.clear();
    });
  }
  const responses = queued;
  responses.add(res);
  // Its turn came: from now on Node closes it with the socket.
  res.once('socket', () => responses.delete(res));
}
