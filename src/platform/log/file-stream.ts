/**
 * The LOG_FILE destination: a pino-roll transport (a worker thread) that is
 * replaced when it fails. A write the file system refuses (ENOSPC on a full
 * disk, EIO, a rotation that cannot open its next file) ends pino-roll's
 * worker for good, and every later write to it fails with "the worker has
 * exited": without this the log file stayed silent until a restart and
 * stderr got one line per log call.
 *
 * While the file cannot be written, lines go to standard error instead, and
 * stderr says so once, then at most once every REPORT_EVERY_MS with how many
 * lines that made. A new transport is tried after 1 s, 2 s, 4 s ... and then
 * every minute; it takes over only once a first line (one saying in the file
 * what is missing) has reached the file, so a disk still full costs a failed
 * try and no line. Lines already handed to a transport when it failed are
 * lost with it.
 */
import { writeSync } from 'node:fs';
import { scrubString } from './scrub.js';

/** A pino transport stream (thread-stream's ThreadStream) as far as this module drives it. */
export interface TransportStream {
  write(data: string): boolean;
  flush(cb: (err?: Error | null) => void): void;
  end(): void;
  readonly destroyed: boolean;
  readonly closed: boolean;
  /** Why it was destroyed, set before its 'error' event is emitted. */
  readonly writableErrored?: Error | null;
  on(event: 'error', listener: (err: Error) => void): unknown;
  once(event: 'close' | 'ready', listener: () => void): unknown;
  /** Its worker thread, ended outright when a new transport does not answer (end() would block for 10 s). */
  readonly worker?: { terminate(): Promise<number>; stream?: unknown };
}

/**
 * What the file missed, as the first line of a transport that takes over
 * describes it. No count of lines: lines keep going to standard error until
 * that line is written; stderr's report when the file is back has the count.
 */
export interface LogGap {
  since: Date;
  error: string;
}

export interface FileLogOptions {
  /** A new transport writing to the log file. */
  open: () => TransportStream;
  /** The first line a replacing transport writes; it must reach the file before that transport is trusted. */
  gapLine: (gap: LogGap) => string;
  /** Writes to standard error (the reports, and lines while the file cannot be written); throws when it cannot. */
  stderr?: (text: string) => void;
  /** The wait before the first new transport, doubled after each failed one up to `max`. */
  retryMs?: { first: number; max: number };
  reportEveryMs?: number;
  /** How long a new transport has to get its first line to the file. */
  answerMs?: number;
}

export const RETRY_MS = { first: 1000, max: 60_000 };
export const REPORT_EVERY_MS = 60_000;
const ANSWER_MS = 10_000;

interface Outage {
  since: number;
  error: string;
  toStderr: number;
  lost: number;
  /** Failed new transports so far: the next wait is retryMs.first * 2^tries, at most retryMs.max. */
  tries: number;
  lastReport: number;
  nextTryAt: number;
  timer?: NodeJS.Timeout;
  /** The new transport being tried, and the time it has to answer. */
  probe?: TransportStream;
  probeTimer?: NodeJS.Timeout;
}

/** fd 2 written directly: process.stderr would emit an 'error' nobody listens to (and crash) if fd 2 fails too. */
function writeStderr(text: string): void {
  let rest = Buffer.from(text);
  while (rest.length > 0) rest = rest.subarray(writeSync(2, rest));
}

/**
 * Lets a closed transport be collected. thread-stream's worker holds its
 * stream strongly until the worker says it is ready, and thread-stream's
 * FinalizationRegistry holds the worker until the stream is collected: a
 * transport whose worker failed as it started (a file it cannot open, a
 * read-only file system) was never collected, 4 MB each, one per try of a
 * long outage. The weak reference is what thread-stream itself puts there
 * once its worker is ready.
 */
function release(stream: TransportStream): void {
  const worker = stream.worker;
  const held = worker?.stream as { deref?: unknown } | undefined;
  if (worker !== undefined && typeof held?.deref === 'function' && !(held instanceof WeakRef)) worker.stream = new WeakRef(stream);
}

function why(err: unknown): string {
  return scrubString(err instanceof Error ? err.message : String(err));
}

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 === 0 ? `${s / 60} min` : `${Math.floor(s / 60)} min ${s % 60} s`;
  const min = Math.floor(s / 60);
  return min % 60 === 0 ? `${min / 60} h` : `${Math.floor(min / 60)} h ${min % 60} min`;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** A pino destination stream (only `write` and `flush` are pino's) over whichever transport currently works. */
export class FileLogStream {
  private current: TransportStream | undefined;
  private outage: Outage | undefined;
  private closing = false;
  /** The transport close() ends: an error of its ending (a last flush the disk refuses) is still said, once. */
  private ending: TransportStream | undefined;
  private toldClosed = false;
  private readonly stderr: (text: string) => void;
  private readonly retryMs: { first: number; max: number };
  private readonly reportEveryMs: number;
  private readonly answerMs: number;

  constructor(private readonly options: FileLogOptions) {
    this.stderr = options.stderr ?? writeStderr;
    this.retryMs = options.retryMs ?? RETRY_MS;
    this.reportEveryMs = options.reportEveryMs ?? REPORT_EVERY_MS;
    this.answerMs = options.answerMs ?? ANSWER_MS;
    this.current = this.start();
  }

  write(line: string): void {
    if (this.closing) {
      this.tellClosed();
      return;
    }
    const stream = this.current;
    if (stream !== undefined && !stream.destroyed) {
      stream.write(line);
      return;
    }
    // Destroyed, its 'error' event not emitted yet: the outage starts here, with the reason it already holds.
    if (stream !== undefined) this.failed(stream, stream.writableErrored ?? new Error('the log thread exited'));
    this.divert(line);
  }

  flush(cb?: (err?: Error | null) => void): void {
    const stream = this.current;
    if (stream !== undefined && !stream.destroyed && !this.closing) stream.flush(cb ?? (() => {}));
    else if (cb) process.nextTick(cb);
  }

  /** Ends the transport once its lines are written (at most `timeoutMs`), and any retry. Later lines are dropped, said once. */
  async close(timeoutMs: number): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const outage = this.outage;
    if (outage) {
      this.endTry(outage);
      this.report(
        `log file closed while it could not be written (${outage.error}), for ${formatDuration(Date.now() - outage.since)}: ` +
          `${this.counts(outage)}`,
      );
      this.outage = undefined;
    }
    const stream = this.current;
    this.current = undefined;
    if (stream === undefined || stream.closed) return;
    this.ending = stream;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      stream.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      stream.end();
    });
  }

  /** A transport with its failure routed here: without an 'error' listener a failure would be an uncaught exception. */
  private start(): TransportStream {
    const stream = this.options.open();
    stream.on('error', (err) => this.failed(stream, err));
    // Closed without an 'error' event: its worker exited (or close() ended it, which is no failure).
    stream.once('close', () => {
      release(stream);
      if (!this.closing) this.failed(stream, stream.writableErrored ?? new Error('the log thread exited'));
    });
    return stream;
  }

  private failed(stream: TransportStream, err: unknown): void {
    if (this.closing) {
      if (stream === this.ending) {
        this.ending = undefined;
        this.report(`log file error as it closed: ${why(err)}`);
      }
      return;
    }
    if (stream === this.current) {
      this.current = undefined;
      const now = Date.now();
      const outage: Outage = { since: now, error: why(err), toStderr: 0, lost: 0, tries: 0, lastReport: now, nextTryAt: now };
      this.outage = outage;
      this.scheduleTry(outage);
      this.report(
        `log file error: ${outage.error}; its lines go to standard error until it can be written again ` +
          `(next try in ${formatDuration(outage.nextTryAt - now)})`,
      );
    } else if (this.outage !== undefined && stream === this.outage.probe) {
      const outage = this.outage;
      this.endTry(outage);
      outage.error = why(err);
      outage.tries++;
      this.scheduleTry(outage);
      this.reportIfDue(outage);
    }
    // Else a transport already replaced or given up on, saying it again.
  }

  private scheduleTry(outage: Outage): void {
    const wait = Math.min(this.retryMs.first * 2 ** Math.min(outage.tries, 30), this.retryMs.max);
    outage.nextTryAt = Date.now() + wait;
    outage.timer = setTimeout(() => this.tryAgain(outage), wait);
    // A process with nothing else to do exits rather than wait for the log file.
    outage.timer.unref();
  }

  private tryAgain(outage: Outage): void {
    outage.timer = undefined;
    if (this.closing || this.outage !== outage) return;
    let probe: TransportStream;
    try {
      probe = this.start();
    } catch (err) {
      outage.error = why(err);
      outage.tries++;
      this.scheduleTry(outage);
      this.reportIfDue(outage);
      return;
    }
    outage.probe = probe;
    outage.probeTimer = setTimeout(() => {
      this.failed(probe, new Error(`the log thread did not answer in ${formatDuration(this.answerMs)}`));
      void probe.worker?.terminate().catch(() => undefined);
    }, this.answerMs);
    outage.probeTimer.unref();
    probe.write(this.options.gapLine({ since: new Date(outage.since), error: outage.error }));
    // The flush answers once the worker wrote the line; a write the disk refuses destroys the transport first.
    // Only after 'ready': a worker that fails as it starts never reads, and a flush asked of it would wait
    // for that read for ever, keeping the stream and its 4 MB buffer alive.
    probe.once('ready', () =>
      probe.flush((err) => {
        if (err) this.failed(probe, err);
        else if (!probe.destroyed && this.outage === outage && outage.probe === probe) this.recovered(outage, probe);
      }),
    );
  }

  private recovered(outage: Outage, stream: TransportStream): void {
    this.endTry(outage);
    this.outage = undefined;
    this.current = stream;
    this.report(`log file written again after ${formatDuration(Date.now() - outage.since)}; meanwhile ${this.counts(outage)}`);
  }

  /** Stops the timers of a try; the transport being tried, if any, is left to its own end. */
  private endTry(outage: Outage): void {
    clearTimeout(outage.timer);
    clearTimeout(outage.probeTimer);
    outage.timer = undefined;
    outage.probeTimer = undefined;
    const probe = outage.probe;
    outage.probe = undefined;
    // A transport given up on while it still runs (closing during a try) is ended without waiting for it.
    if (probe !== undefined && !probe.destroyed && this.closing) void probe.worker?.terminate().catch(() => undefined);
  }

  private divert(line: string): void {
    const outage = this.outage;
    if (outage === undefined) return;
    try {
      this.stderr(line);
      outage.toStderr++;
    } catch {
      outage.lost++;
    }
    this.reportIfDue(outage);
  }

  private reportIfDue(outage: Outage): void {
    const now = Date.now();
    if (now - outage.lastReport < this.reportEveryMs) return;
    outage.lastReport = now;
    const next = outage.probe !== undefined ? 'trying again now' : `next try in ${formatDuration(Math.max(0, outage.nextTryAt - now))}`;
    this.report(
      `log file still cannot be written (${outage.error}), for ${formatDuration(now - outage.since)}: ${this.counts(outage)}; ${next}`,
    );
  }

  private counts(outage: Outage): string {
    const lost = outage.lost > 0 ? `, ${plural(outage.lost, 'line', 'lines')} lost (standard error refused them too)` : '';
    return `${plural(outage.toStderr, 'line', 'lines')} went to standard error instead${lost}`;
  }

  private tellClosed(): void {
    if (this.toldClosed) return;
    this.toldClosed = true;
    this.report('a line was logged after the log file was closed; it and any later ones are not written');
  }

  private report(text: string): void {
    try {
      this.stderr(`kiln: ${text}\n`);
    } catch {
      // Standard error refused too: nowhere is left to say it.
    }
  }
}
