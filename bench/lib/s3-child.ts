/**
 * The tests' S3-protocol server (test/helpers/s3.ts) in a process of its own,
 * for benches: in the bench's own process its work would share an event loop
 * with the load generator and the engine's renders, and its pauses would be
 * counted as Kiln's. Started by startS3Child; it answers "clear" (drop every
 * object, so a long run does not measure a growing heap) and ends with its
 * parent.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startLocalS3 } from '../../test/helpers/s3.js';

export interface S3Child {
  env: Record<string, string>;
  clear(): Promise<void>;
  close(): Promise<void>;
}

type Message = { endpoint: string; env: Record<string, string> } | { cleared: true };

/** Runs the server in a child process with one bucket; resolves once it listens. */
export async function startS3Child(bucket: string): Promise<S3Child> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [bucket], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = (): Promise<Message> =>
    new Promise((resolve, reject) => {
      child.once('message', (m) => resolve(m as Message));
      child.once('exit', (code) => reject(new Error(`the S3 server process ended (${code})`)));
    });
  const started = await next();
  if (!('env' in started)) throw new Error('the S3 server process did not start');
  return {
    env: started.env,
    clear: async () => {
      const done = next();
      child.send('clear');
      await done;
    },
    close: async () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill();
      await exited;
    },
  };
}

// As the child: serve until the parent goes.
if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  const bucket = process.argv[2] as string;
  const s3 = await startLocalS3([bucket]);
  process.on('message', (m) => {
    if (m !== 'clear') return;
    for (const objects of s3.buckets.values()) objects.clear();
    process.send?.({ cleared: true });
  });
  process.on('disconnect', () => void s3.close().then(() => process.exit(0)));
  process.send({ endpoint: s3.endpoint, env: s3.env(bucket) });
}
