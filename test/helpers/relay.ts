/**
 * A TCP relay in front of a real server (PostgreSQL, Redis), for tests of
 * what Kiln does when that server hangs, drops its connections or cannot be
 * reached. Clients connect to `url`; the relay passes bytes both ways until
 * told otherwise:
 * - hold(): keeps what passes, both ways, until release() sends it on in
 *   order (a server that stops answering for a while);
 * - freeze(): passes nothing any more and drops what comes (a server that
 *   hangs for good, or a network that drops its packets);
 * - dropConnections(): ends every connection open now (a restart, a proxy
 *   going away); new ones are relayed as before;
 * - heldCount(): how many chunks wait in a hold (a test knows a request is
 *   in flight once it is above 0).
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface TcpRelay {
  url: string;
  hold(): void;
  release(): void;
  freeze(): void;
  dropConnections(): void;
  heldCount(): number;
  close(): Promise<void>;
}

/** A relay to `target` (its port, or `defaultPort`); `held`: it starts holding, as hold() was called. */
export async function tcpRelay(target: URL, defaultPort: number, options: { held?: boolean; port?: number } = {}): Promise<TcpRelay> {
  let held: Array<() => void> | null = options.held ? [] : null;
  let frozen = false;
  const sockets = new Set<Socket>();
  const relay: Server = createServer((client) => {
    const upstream = connect(Number(target.port || defaultPort), target.hostname);
    sockets.add(client).add(upstream);
    const forward = (to: Socket) => (chunk: Buffer) => {
      if (frozen) return;
      if (held) held.push(() => to.write(chunk));
      else to.write(chunk);
    };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  // On a given port: a service that comes up where a process already tries to reach it.
  await new Promise<void>((resolve) => relay.listen(options.port ?? 0, '127.0.0.1', resolve));
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String((relay.address() as AddressInfo).port);
  return {
    url: url.toString(),
    hold: () => {
      held ??= [];
    },
    release: () => {
      const waiting = held ?? [];
      held = null;
      for (const send of waiting) send();
    },
    freeze: () => {
      frozen = true;
    },
    dropConnections: () => {
      if (held) held.length = 0;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    heldCount: () => held?.length ?? 0,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => relay.close(() => resolve()));
    },
  };
}
