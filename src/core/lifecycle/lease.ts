import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { LeaseHeldError, LeaseLostError } from '../../errors.js';
import type { Logger } from '../../log/log.js';
import {
  CLEANUP_TIMEOUT_MS,
  httpStatus,
  isAbort,
  type EtagForm,
  type S3Store,
} from '../../s3/store.js';
import { holderAlive, procStat } from '../resume.js';

/**
 * A lease per plate: one S3 object whose every write is a conditional PUT (If-None-Match: * to
 * create, If-Match: <etag> to take, renew, release). Decisions use only ETags and this process's
 * monotonic clock; the wall-clock times in the body are for people (plan shows them).
 */

export type LeaseWork = 'archive' | 'verify' | 'delete' | 'restore';

export interface LeaseOwner {
  host: string;
  pid: number;
  /** /proc/PID/stat start time: a reused pid is another process. */
  start?: string;
  runId: string;
  /** New for each claim: a body with our nonce is a write of ours (a retried PUT that landed). */
  nonce: string;
}

export interface LeaseBody {
  owner: LeaseOwner;
  /** The fencing token: +1 at every claim; outputs record the generation that wrote them. */
  generation: number;
  /** The generation of the last archive that started writing outputs (0: none yet). */
  archiveGeneration: number;
  work: LeaseWork;
  ttlMs: number;
  state: 'held' | 'released';
  /** +1 at every write of one claim, so the body (and so the ETag) changes each time. */
  renewal: number;
  /** Informational only (ISO wall-clock times): never used for a decision. */
  since: string;
  expires: string;
}

/** A few minutes: a killed holder delays its plate by TTL + margin; renewals (TTL/10) stay rare. */
export const DEFAULT_LEASE_TTL_MS = 5 * 60_000;
/** Below this a renewal (TTL/10) is shorter than one S3 round trip on a slow link. */
export const MIN_LEASE_TTL_MS = 1_000;
/** The margin's floor: covers a slow request in flight and the two clocks' rate difference. */
const MIN_MARGIN_MS = 10_000;

/**
 * What separates the holder's deadline (TTL − margin after its last renewal was sent) from a
 * waiter's takeover (TTL + margin after it saw that renewal): TTL/5, at least 10 s, but never
 * more than a third of a short test TTL, so the holder still has time to renew.
 */
export function leaseMargin(ttlMs: number): number {
  return Math.max(ttlMs / 5, Math.min(MIN_MARGIN_MS, ttlMs / 3));
}

/** The holder renews about ten times per TTL: several tries before its deadline. */
export const renewEveryMs = (ttlMs: number) => ttlMs / 10;

/** The monotonic time (ms) after which a holder whose last renewal was sent at `lastOkMs` is lost. */
export const holderDeadline = (lastOkMs: number, ttlMs: number) =>
  lastOkMs + ttlMs - leaseMargin(ttlMs);

/** A waiter's poll of a held lease: about 20 per TTL + margin, within 0.1-5 s. */
const pollMs = (holdMs: number) => Math.min(5_000, Math.max(100, holdMs / 20));

/** A monotonic clock in milliseconds. */
export type Clock = () => number;
export const monotonic: Clock = () => performance.now();

/** The wall clock the lease records; a test shifts it to show no decision depends on it. */
export function wallNow(): Date {
  const offset = Number(process.env.IMGBACKUP_TEST_CLOCK_OFFSET_MS ?? 0);
  return new Date(Date.now() + (Number.isFinite(offset) ? offset : 0));
}

/** The body's bytes: fixed key order, one line. */
export function encodeLease(b: LeaseBody): string {
  const owner = {
    host: b.owner.host,
    pid: b.owner.pid,
    ...(b.owner.start !== undefined ? { start: b.owner.start } : {}),
    runId: b.owner.runId,
    nonce: b.owner.nonce,
  };
  return `${JSON.stringify({
    owner,
    generation: b.generation,
    archiveGeneration: b.archiveGeneration,
    work: b.work,
    ttlMs: b.ttlMs,
    state: b.state,
    renewal: b.renewal,
    since: b.since,
    expires: b.expires,
  })}\n`;
}

const WORKS: readonly string[] = ['archive', 'verify', 'delete', 'restore'];
const isCount = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
const isText = (v: unknown): v is string => typeof v === 'string';

/** A lease body, or undefined if the text is not one (then it is judged by its ETag alone). */
export function parseLease(text: string): LeaseBody | undefined {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const o = (j?.owner ?? {}) as Record<string, unknown>;
  if (!isText(o.host) || !isCount(o.pid) || !isText(o.runId) || !isText(o.nonce)) return undefined;
  if (o.start !== undefined && !isText(o.start)) return undefined;
  if (!isCount(j.generation) || j.generation < 1 || !isCount(j.archiveGeneration)) return undefined;
  if (!isText(j.work) || !WORKS.includes(j.work) || !isCount(j.ttlMs) || !isCount(j.renewal))
    return undefined;
  if (j.state !== 'held' && j.state !== 'released') return undefined;
  if (!isText(j.since) || !isText(j.expires)) return undefined;
  return {
    owner: {
      host: o.host,
      pid: o.pid,
      ...(isText(o.start) ? { start: o.start } : {}),
      runId: o.runId,
      nonce: o.nonce,
    },
    generation: j.generation,
    archiveGeneration: j.archiveGeneration,
    work: j.work as LeaseWork,
    ttlMs: j.ttlMs,
    state: j.state,
    renewal: j.renewal,
    since: j.since,
    expires: j.expires,
  };
}

/** A lease object as read: its ETag and body (undefined if the text is not a lease). */
export interface LeaseView {
  etag: string;
  body: LeaseBody | undefined;
}

/** What a waiter has seen of a held lease, on its own monotonic clock. */
export interface Watch {
  etag: string;
  /** When this ETag was first seen. */
  sinceMs: number;
  /** When the wait began. */
  startMs: number;
  /** Whether the ETag changed while we waited: its holder is renewing it. */
  renewed: boolean;
}

export type Decision =
  | { kind: 'create' }
  | { kind: 'take'; etag: string; prior: LeaseBody | undefined; why: TakeReason }
  | { kind: 'wait'; watch: Watch; ms: number }
  | { kind: 'held'; prior: LeaseBody | undefined };

export type TakeReason = 'released' | 'expired' | 'holder gone';

/**
 * What to do about the lease as it is now. A released lease is taken; a held one when its holder
 * is a process of this host that is gone, or once its ETag stayed unchanged for its TTL + margin
 * on our monotonic clock. A holder that renewed while we waited that long is alive: 'held'.
 */
export function decide(
  view: LeaseView | undefined,
  watch: Watch | undefined,
  nowMs: number,
  opts: { ttlMs: number; alive: (o: LeaseOwner) => boolean },
): Decision {
  if (!view) return { kind: 'create' };
  const b = view.body;
  if (b?.state === 'released') return { kind: 'take', etag: view.etag, prior: b, why: 'released' };
  if (b && !opts.alive(b.owner))
    return { kind: 'take', etag: view.etag, prior: b, why: 'holder gone' };
  const ttl = b?.ttlMs ?? opts.ttlMs;
  const hold = ttl + leaseMargin(ttl);
  const w: Watch =
    watch === undefined
      ? { etag: view.etag, sinceMs: nowMs, startMs: nowMs, renewed: false }
      : watch.etag !== view.etag
        ? { etag: view.etag, sinceMs: nowMs, startMs: watch.startMs, renewed: true }
        : watch;
  if (nowMs - w.sinceMs >= hold) return { kind: 'take', etag: view.etag, prior: b, why: 'expired' };
  if (w.renewed && nowMs - w.startMs >= hold) return { kind: 'held', prior: b };
  return { kind: 'wait', watch: w, ms: Math.min(pollMs(hold), hold - (nowMs - w.sinceMs)) };
}

/** A lease's holder may still run: another host's always counts as alive (not checkable here). */
export function ownerAlive(o: LeaseOwner): boolean {
  return holderAlive({ pid: o.pid, host: o.host, ...(o.start ? { start: o.start } : {}) });
}

export function describeHolder(b: LeaseBody | undefined): string {
  if (!b) return 'an unreadable lease';
  return `host ${b.owner.host} (pid ${b.owner.pid}, ${b.work}) since ${b.since}`;
}

export interface LeaseParams {
  bucket: string;
  key: string;
  work: LeaseWork;
  ttlMs: number;
  runId: string;
  form: EtagForm;
  log: Logger;
  clock?: Clock;
}

export async function readLease(
  store: S3Store,
  bucket: string,
  key: string,
): Promise<LeaseView | undefined> {
  const got = await store.getWithEtag(bucket, key);
  return got && { etag: got.etag, body: parseLease(got.text) };
}

/** Whether a conditional PUT that failed had in fact landed: the object holds exactly `text`. */
async function landed(store: S3Store, p: LeaseParams, text: string): Promise<string | undefined> {
  const now = await store.getWithEtag(p.bucket, p.key).catch(() => undefined);
  return now?.text === text ? now.etag : undefined;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const t = setTimeout(done, ms);
    function done() {
      signal.removeEventListener('abort', abort);
      resolve();
    }
    function abort() {
      clearTimeout(t);
      reject(signal.reason as Error);
    }
    signal.addEventListener('abort', abort, { once: true });
  });

/**
 * Claims the plate's lease for `p.work`: creates it, takes a released one, or takes over an
 * expired one (see decide); throws LeaseHeldError if another live run keeps renewing it.
 * `store` carries the run's signal (Ctrl-C stops the wait).
 */
export async function acquireLease(store: S3Store, p: LeaseParams): Promise<Lease> {
  const clock = p.clock ?? monotonic;
  const owner = ourOwner(p.runId);
  let watch: Watch | undefined;
  for (;;) {
    const view = await readLease(store, p.bucket, p.key);
    const d = decide(view, watch, clock(), { ttlMs: p.ttlMs, alive: ownerAlive });
    if (d.kind === 'held') {
      throw new LeaseHeldError(
        `its lease s3://${p.bucket}/${p.key} is held by ${describeHolder(d.prior)}, renewed while we waited; re-run later`,
      );
    }
    if (d.kind === 'wait') {
      if (!watch)
        p.log.warn(
          { holder: view?.body?.owner },
          `waiting for the lease held by ${describeHolder(view?.body)}`,
        );
      watch = d.watch;
      await sleep(d.ms, store.signal);
      continue;
    }
    const prior = d.kind === 'take' ? d.prior : undefined;
    const wall = wallNow();
    const body: LeaseBody = {
      owner,
      generation: (prior?.generation ?? 0) + 1,
      archiveGeneration: prior?.archiveGeneration ?? 0,
      work: p.work,
      ttlMs: p.ttlMs,
      state: 'held',
      renewal: 0,
      since: wall.toISOString(),
      expires: new Date(wall.getTime() + p.ttlMs).toISOString(),
    };
    const text = encodeLease(body);
    const sentMs = clock();
    let etag: string | undefined;
    try {
      const r = await store.putConditional(
        p.bucket,
        p.key,
        text,
        d.kind === 'take' ? { ifMatch: d.etag, form: p.form } : { ifNoneMatch: true },
      );
      etag = r.etag;
    } catch (err) {
      if (isAbort(err) || store.signal.aborted) throw err;
      // A 412, or an answer lost on the way: ours if our bytes are there (a retry that landed).
      etag = await landed(store, p, text);
      if (etag === undefined && httpStatus(err) !== 412) throw err;
    }
    if (etag === undefined) continue; // another run was faster: look again
    if (d.kind === 'take' && d.why !== 'released') {
      p.log.warn(
        { previous: prior?.owner, generation: body.generation },
        `took over the lease of ${describeHolder(prior)} (${d.why})`,
      );
    }
    return new Lease(store, p, body, etag, sentMs, prior?.archiveGeneration ?? 0);
  }
}

function ourOwner(runId: string): LeaseOwner {
  const start = procStat(process.pid)?.start;
  return {
    host: hostname(),
    pid: process.pid,
    ...(start ? { start } : {}),
    runId,
    nonce: randomBytes(8).toString('hex'),
  };
}

/**
 * A held lease. It renews itself about every TTL/10; if no renewal succeeds within TTL − margin
 * of the last one, or another run took it, it is lost: `signal` fires (every request of the
 * plate's work listens to it) and assertHeld() throws LeaseLostError.
 */
export class Lease {
  private readonly ctl = new AbortController();
  private readonly clock: Clock;
  private lostError: LeaseLostError | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Fires at the deadline itself: renewals that fail fast would notice it up to TTL/10 late. */
  private deadlineTimer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private released = false;

  constructor(
    private readonly store: S3Store,
    private readonly p: LeaseParams,
    private body: LeaseBody,
    private etag: string,
    private lastOkMs: number,
    /** The lease's archive generation before this claim: outputs older than it are stale. */
    readonly priorArchiveGeneration: number,
  ) {
    this.clock = p.clock ?? monotonic;
    this.schedule();
    this.armDeadline();
  }

  get generation(): number {
    return this.body.generation;
  }

  get signal(): AbortSignal {
    return this.ctl.signal;
  }

  get lost(): LeaseLostError | undefined {
    this.checkDeadline();
    return this.lostError;
  }

  /** Throws LeaseLostError once the lease is lost; checked before every write of the plate. */
  assertHeld(): void {
    const lost = this.lost;
    if (lost) throw lost;
  }

  /** Archive: records that this generation writes outputs now (before its first one). */
  async beginWrites(): Promise<void> {
    await this.update({ archiveGeneration: this.body.generation });
  }

  /** Gives the lease back (kept, state 'released', so its generation survives). */
  async release(): Promise<void> {
    this.stop();
    await this.chain;
    if (this.lost || this.released) return;
    this.released = true;
    const ok = await this.write({ state: 'released' }, AbortSignal.timeout(CLEANUP_TIMEOUT_MS));
    if (!ok)
      this.p.log.warn(
        { key: this.p.key },
        'could not release the lease; another run takes it over after its TTL',
      );
  }

  private stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
  }

  /** (Re)arms the deadline timer for the last successful write; a timer that fires early re-arms. */
  private armDeadline(): void {
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    if (this.lostError || this.released) return;
    const left = holderDeadline(this.lastOkMs, this.p.ttlMs) - this.clock();
    this.deadlineTimer = setTimeout(
      () => {
        this.deadlineTimer = undefined;
        this.checkDeadline();
        if (!this.lostError && this.timer) this.armDeadline();
      },
      Math.max(0, Math.ceil(left)) + 1,
    );
    this.deadlineTimer.unref();
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.chain = this.chain
        .then(() => this.renew())
        .catch((err: unknown) => this.p.log.warn({ err }, 'a lease renewal failed'))
        .finally(() => {
          if (this.timer && !this.lostError) this.schedule();
        });
    }, renewEveryMs(this.p.ttlMs));
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (this.lost) return;
    const left = holderDeadline(this.lastOkMs, this.p.ttlMs) - this.clock();
    await this.write({}, AbortSignal.timeout(Math.ceil(Math.max(100, left))));
  }

  private async update(change: Partial<LeaseBody>): Promise<void> {
    const run = this.chain.then(async () => {
      this.assertHeld();
      if (!(await this.write(change, AbortSignal.timeout(CLEANUP_TIMEOUT_MS)))) {
        this.assertHeld();
        throw new LeaseLostError(
          `could not update its lease s3://${this.p.bucket}/${this.p.key}; re-run later`,
        );
      }
    });
    this.chain = run.catch(() => {});
    await run;
  }

  /** One conditional write of the next body. True if it landed (ours now); false if it failed. */
  private async write(change: Partial<LeaseBody>, signal: AbortSignal): Promise<boolean> {
    const wall = wallNow();
    const next: LeaseBody = {
      ...this.body,
      ...change,
      renewal: this.body.renewal + 1,
      expires: new Date(wall.getTime() + this.p.ttlMs).toISOString(),
    };
    const text = encodeLease(next);
    const store = this.store.withSignal(signal);
    const sentMs = this.clock();
    let etag: string | undefined;
    let taken = false;
    try {
      const r = await store.putConditional(this.p.bucket, this.p.key, text, {
        ifMatch: this.etag,
        form: this.p.form,
      });
      etag = r.etag;
    } catch (err) {
      const now = await store.getWithEtag(this.p.bucket, this.p.key).catch(() => undefined);
      if (now?.text === text)
        etag = now.etag; // our retried PUT had landed
      else if (now && parseLease(now.text)?.owner.nonce !== this.body.owner.nonce) taken = true;
      else if (!now && httpStatus(err) === 412) taken = true; // removed: not ours any more
      this.p.log.warn({ key: this.p.key, status: httpStatus(err) }, 'a lease renewal failed');
    }
    if (taken) {
      this.lose(`its lease s3://${this.p.bucket}/${this.p.key} was taken by another run`);
      return false;
    }
    if (etag === undefined) {
      this.checkDeadline();
      return false;
    }
    this.body = next;
    this.etag = etag;
    this.lastOkMs = sentMs;
    if (this.timer) this.armDeadline();
    return true;
  }

  private checkDeadline(): void {
    if (this.lostError || this.released) return;
    if (this.clock() > holderDeadline(this.lastOkMs, this.p.ttlMs)) {
      this.lose(
        `its lease s3://${this.p.bucket}/${this.p.key} could not be renewed within ${Math.round((this.p.ttlMs - leaseMargin(this.p.ttlMs)) / 1000)} s`,
      );
    }
  }

  private lose(why: string): void {
    if (this.lostError) return;
    this.lostError = new LeaseLostError(
      `${why}; stopped: wrote and deleted nothing more (another run may hold the plate now); re-run later`,
    );
    this.p.log.error({ key: this.p.key, generation: this.body.generation }, why);
    this.stop();
    this.ctl.abort(this.lostError);
  }
}
