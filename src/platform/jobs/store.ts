/**
 * The jobs table: every read and write both runners make. Writes by a runner
 * are fenced by `locked_by` and `status = 'processing'`, so a runner that
 * lost its lease (it stalled, another took the job over) cannot overwrite
 * the outcome of the one that holds it now.
 */
import { sql, type Kysely, type Selectable } from 'kysely';
import type { Clock } from '../../clock.js';
import { newId } from '../../ids.js';
import { isUniqueViolation, type DialectName } from '../db/index.js';
import type { Database, JobsTable } from '../db/schema.js';
import { decodePosition, encodePosition } from '../http/cursor.js';
import type { Job, JobErrorInfo, JobPage, JobStatus, ListQuery } from './types.js';

export type JobRow = Selectable<JobsTable>;

export interface NewJob {
  type: string;
  input: unknown;
  userId: string | null;
  maxAttempts: number;
  dedupeKey?: string;
}

function parseJson(text: string | null): unknown {
  return text === null ? null : JSON.parse(text);
}

export function toJob(row: JobRow): Job {
  return {
    job_id: row.job_id,
    type: row.type,
    status: row.status as JobStatus,
    progress: Number(row.progress),
    attempts: Number(row.attempts),
    max_attempts: Number(row.max_attempts),
    input: parseJson(row.input),
    result: parseJson(row.result),
    error: parseJson(row.error) as JobErrorInfo | null,
    created_at: row.created_at,
    started_at: row.started_at,
    finished_at: row.finished_at,
    user_id: row.user_id,
  };
}

export const isFinished = (status: string): boolean => status === 'completed' || status === 'failed' || status === 'cancelled';

/**
 * Of `keys`, those some job carries as its dedupe key, whatever its status.
 * Over the database alone, not a runner: both runners keep their rows in
 * this table, and the orphan sweep that asks (through the pipeline) has
 * the database but no runner.
 */
export async function dedupeKeysWithJobs(db: Kysely<Database>, keys: readonly string[]): Promise<string[]> {
  if (keys.length === 0) return [];
  const rows = await db.selectFrom('jobs').select('dedupe_key').distinct().where('dedupe_key', 'in', keys).execute();
  return rows.flatMap((r) => (r.dedupe_key === null ? [] : [r.dedupe_key]));
}

export class JobStore {
  private lastCreated = 0;

  constructor(
    readonly kysely: Kysely<Database>,
    readonly dialect: DialectName,
    private readonly clock: Clock,
  ) {}

  now(offsetMs = 0): string {
    return new Date(this.clock.now().getTime() + offsetMs).toISOString();
  }

  /** Strictly increasing within this process, so "newest first" is exact for jobs it creates. */
  private createdAt(): string {
    const t = Math.max(this.clock.now().getTime(), this.lastCreated + 1);
    this.lastCreated = t;
    return new Date(t).toISOString();
  }

  /**
   * Inserts a queued job, through `q` (a transaction of the caller's) when given; with a dedupe key already live,
   * returns that job instead (`created: false`).
   */
  async insert(job: NewJob, q: Kysely<Database> = this.kysely): Promise<{ row: JobRow; created: boolean }> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (job.dedupeKey !== undefined) {
        const live = await this.findLive(q, job.dedupeKey);
        if (live) return { row: live, created: false };
      }
      const now = this.createdAt();
      const row: JobRow = {
        job_id: newId(),
        type: job.type,
        status: 'queued',
        progress: 0,
        attempts: 0,
        max_attempts: job.maxAttempts,
        input: JSON.stringify(job.input ?? null),
        result: null,
        error: null,
        user_id: job.userId,
        dedupe_key: job.dedupeKey ?? null,
        created_at: now,
        started_at: null,
        finished_at: null,
        // Due now by the real clock: created_at may run a few ms ahead in a burst (kept strictly increasing for ordering).
        run_after: this.now(),
        locked_by: null,
        locked_until: null,
        recoveries: 0,
      };
      try {
        await q.insertInto('jobs').values(row).execute();
        return { row, created: true };
      } catch (err) {
        // Another enqueue with the same key won the race: loop to return its job.
        if (!isUniqueViolation(err) || job.dedupeKey === undefined) throw err;
      }
    }
    throw new Error(`could not enqueue a job for dedupe key ${job.dedupeKey}`);
  }

  private async findLive(q: Kysely<Database>, dedupeKey: string): Promise<JobRow | undefined> {
    return q
      .selectFrom('jobs')
      .selectAll()
      .where('dedupe_key', '=', dedupeKey)
      .where('status', 'in', ['queued', 'processing'])
      .executeTakeFirst();
  }

  async get(jobId: string): Promise<JobRow | undefined> {
    return this.kysely.selectFrom('jobs').selectAll().where('job_id', '=', jobId).executeTakeFirst();
  }

  async list(query: ListQuery): Promise<JobPage> {
    const limit = Math.min(Math.max(Math.trunc(query.limit ?? 20), 1), 100);
    let q = this.kysely.selectFrom('jobs').selectAll();
    if (!query.all) q = q.where('user_id', '=', query.userId);
    if (query.status) q = q.where('status', '=', query.status);
    if (query.type) q = q.where('type', '=', query.type);
    if (query.cursor) {
      const { createdAt, id: jobId } = decodePosition(query.cursor);
      q = q.where((eb) =>
        eb.or([eb('created_at', '<', createdAt), eb.and([eb('created_at', '=', createdAt), eb('job_id', '<', jobId)])]),
      );
    }
    const rows = await q.orderBy('created_at', 'desc').orderBy('job_id', 'desc').limit(limit + 1).execute();
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { jobs: page.map(toJob), next_cursor: rows.length > limit && last ? encodePosition({ createdAt: last.created_at, id: last.job_id }) : null };
  }

  /**
   * Takes the oldest due job of one of `kinds`: a queued one, or with
   * `expired` a processing one whose runner's lease ran out (it died). Two
   * separate shapes so the common one is a plain index range. One UPDATE, so
   * two runners never take the same job: SQLite serialises writers,
   * PostgreSQL skips rows another transaction has locked.
   */
  async claimNext(kinds: string[], workerId: string, leaseMs: number, expired = false): Promise<JobRow | undefined> {
    if (kinds.length === 0) return undefined;
    const now = this.now();
    return this.kysely
      .updateTable('jobs')
      .set(this.claimSet(workerId, leaseMs, now))
      .where('job_id', '=', (eb) => {
        const base = eb.selectFrom('jobs').select('job_id').where('type', 'in', kinds);
        const pick = expired
          ? base.where('status', '=', 'processing').where('locked_until', '<', now).orderBy('locked_until').limit(1)
          : base.where('status', '=', 'queued').where('run_after', '<=', now).orderBy('run_after').limit(1);
        return this.dialect === 'postgres' ? pick.forUpdate().skipLocked() : pick;
      })
      // Re-checked on the row itself: under PostgreSQL's READ COMMITTED the subquery may have seen an older version.
      .where('status', '=', expired ? 'processing' : 'queued')
      .returningAll()
      .executeTakeFirst();
  }

  /**
   * BullMQ picked this job for this worker: takes the row when it is queued,
   * or processing under a lease that ran out (its runner died). A lease still
   * renewed is a run still going, whatever BullMQ thinks (a worker cut off
   * from Redis keeps its database lease): the row is left to its holder, and
   * `leaseLeftMs` says how long to wait before asking again.
   */
  async claimById(jobId: string, workerId: string, leaseMs: number): Promise<JobRow | undefined> {
    const now = this.now();
    return this.kysely
      .updateTable('jobs')
      .set(this.claimSet(workerId, leaseMs, now))
      .where('job_id', '=', jobId)
      .where((w) => w.or([w('status', '=', 'queued'), w.and([w('status', '=', 'processing'), w.or([w('locked_until', 'is', null), w('locked_until', '<', now)])])]))
      .returningAll()
      .executeTakeFirst();
  }

  /** Milliseconds left on the lease of a job another run holds; 0 when no run holds it (finished, queued, or its lease ran out). */
  async leaseLeftMs(jobId: string): Promise<number> {
    const row = await this.kysely.selectFrom('jobs').select(['status', 'locked_until']).where('job_id', '=', jobId).executeTakeFirst();
    if (row?.status !== 'processing' || row.locked_until === null) return 0;
    return Math.max(0, Date.parse(row.locked_until) - this.clock.now().getTime());
  }

  private claimSet(workerId: string, leaseMs: number, now: string) {
    return {
      status: 'processing',
      // A run cut short by a dead runner is not a failed attempt; it counts as a recovery instead.
      attempts: sql<number>`case when status = 'queued' then attempts + 1 else attempts end`,
      recoveries: sql<number>`case when status = 'processing' then recoveries + 1 else recoveries end`,
      started_at: sql<string>`coalesce(started_at, ${now})`,
      locked_by: workerId,
      locked_until: this.now(leaseMs),
    };
  }

  /** Extends the lease; false when this runner no longer holds the job (lease lost, cancelled). */
  async heartbeat(jobId: string, workerId: string, leaseMs: number): Promise<boolean> {
    const r = await this.held(this.kysely.updateTable('jobs').set({ locked_until: this.now(leaseMs) }), jobId, workerId).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async progress(jobId: string, workerId: string, progress: number, extra?: Record<string, unknown>): Promise<void> {
    const set = extra === undefined ? { progress } : { progress, result: JSON.stringify(extra) };
    await this.held(this.kysely.updateTable('jobs').set(set), jobId, workerId).execute();
  }

  async complete(jobId: string, workerId: string, result: unknown): Promise<boolean> {
    const set = { status: 'completed', progress: 1, result: JSON.stringify(result ?? null), error: null, finished_at: this.now(), locked_by: null, locked_until: null };
    const r = await this.held(this.kysely.updateTable('jobs').set(set), jobId, workerId).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /**
   * Back to queued until `delayMs` from now; the last error stays visible
   * meanwhile. The attempt starts over, so its progress and what it reported
   * on the way (a pipeline's stage) go.
   */
  async retry(jobId: string, workerId: string, error: JobErrorInfo, delayMs: number): Promise<boolean> {
    const set = { status: 'queued', progress: 0, result: null, error: JSON.stringify(error), run_after: this.now(delayMs), locked_by: null, locked_until: null };
    const r = await this.held(this.kysely.updateTable('jobs').set(set), jobId, workerId).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Gives a running job back to the queue (shutdown) without spending its attempt; it starts over, like a retry. */
  async release(jobId: string, workerId: string): Promise<boolean> {
    const set = {
      status: 'queued',
      progress: 0,
      result: null,
      attempts: sql<number>`attempts - 1`,
      run_after: this.now(),
      locked_by: null,
      locked_until: null,
    };
    const r = await this.held(this.kysely.updateTable('jobs').set(set), jobId, workerId).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Back to queued until `delayMs` from now, its attempt not spent; progress and what it reported stay. */
  async defer(jobId: string, workerId: string, delayMs: number): Promise<boolean> {
    const set = { status: 'queued', attempts: sql<number>`attempts - 1`, run_after: this.now(delayMs), locked_by: null, locked_until: null };
    const r = await this.held(this.kysely.updateTable('jobs').set(set), jobId, workerId).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** `workerId` null: fail whoever holds it (BullMQ gave up on a job whose workers kept dying). */
  async fail(jobId: string, workerId: string | null, error: JobErrorInfo): Promise<boolean> {
    const set = { status: 'failed', error: JSON.stringify(error), finished_at: this.now(), locked_by: null, locked_until: null };
    const q = this.kysely.updateTable('jobs').set(set);
    const r = await (workerId === null
      ? q.where('job_id', '=', jobId).where('status', 'in', ['queued', 'processing'])
      : this.held(q, jobId, workerId)
    ).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async cancel(jobId: string): Promise<boolean> {
    const r = await this.kysely
      .updateTable('jobs')
      .set({ status: 'cancelled', finished_at: this.now(), locked_by: null, locked_until: null })
      .where('job_id', '=', jobId)
      .where('status', 'in', ['queued', 'processing'])
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Deletes every finished job of `userId`; how many went. */
  async deleteFinishedOf(userId: string): Promise<number> {
    const r = await this.kysely.deleteFrom('jobs').where('user_id', '=', userId).where('status', 'in', ['completed', 'failed', 'cancelled']).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /**
   * Deletes up to `limit` jobs finished before `before`, none of the kinds in
   * `keep`; how many went. Only a job that ended (completed, failed,
   * cancelled) has a `finished_at`, so that column alone picks them, through
   * its index: with a status filter beside it SQLite chose the status index
   * and read every completed job of the retention period on each page.
   */
  async deleteFinished(before: string, keep: readonly string[], limit: number): Promise<number> {
    let page = this.kysely.selectFrom('jobs').select('job_id').where('finished_at', '<', before);
    if (keep.length > 0) page = page.where('type', 'not in', keep);
    const r = await this.kysely.deleteFrom('jobs').where('job_id', 'in', page.limit(limit)).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /**
   * Jobs that should be running but nobody is on them: queued and due for
   * longer than `graceMs`, or processing with a lease run out that long ago.
   * BullMQ may have lost them (enqueue crashed midway, Redis emptied, a job
   * it failed for stalling too often).
   */
  async orphans(graceMs: number, limit: number): Promise<JobRow[]> {
    const before = this.now(-graceMs);
    return this.kysely
      .selectFrom('jobs')
      .selectAll()
      .where((w) =>
        w.or([
          w.and([w('status', '=', 'queued'), w('run_after', '<', before)]),
          w.and([w('status', '=', 'processing'), w('locked_until', '<', before)]),
        ]),
      )
      .orderBy('run_after')
      .limit(limit)
      .execute();
  }

  private held<Q extends { where: WhereFn<Q> }>(q: Q, jobId: string, workerId: string): Q {
    return q.where('job_id', '=', jobId).where('status', '=', 'processing').where('locked_by', '=', workerId);
  }
}

// Kysely's UpdateQueryBuilder narrowed to the one overload `held` uses, so it can stay generic.
type WhereFn<Q> = (column: 'job_id' | 'status' | 'locked_by', op: '=', value: string) => Q;
