import { randomBytes } from 'node:crypto';
import { LeaseLostError, UsageError } from '../../errors.js';
import { plateLayout, type LayoutOptions, type PlateLayout } from '../../layout/layout.js';
import type { Logger } from '../../log/log.js';
import type { PlateRow } from '../../plates/plates-csv.js';
import type { EtagForm, Fence, S3Store } from '../../s3/store.js';
import { lockPlate, type PlateLock } from '../resume.js';
import { acquireLease, DEFAULT_LEASE_TTL_MS, type Lease, type LeaseWork } from './lease.js';
import { probeLeases } from './lease-probe.js';

/**
 * A plate's life, shared by archive, verify, delete and restore: the run probes the store once
 * (openGuard), then each plate is claimed, worked on through a store fenced by its claim,
 * published, and released (withClaim).
 */

/** How a run keeps two runs off one plate: S3 leases, or (a store without conditional PUTs) today's local lock. */
export type Guard =
  { kind: 'lease'; form: EtagForm; ttlMs: number; runId: string } | { kind: 'local'; why: string };

export interface GuardOptions {
  plates: readonly PlateRow[];
  layout: LayoutOptions;
  log: Logger;
  leaseTtlMs?: number;
  /** Set by --shard: several hosts share the plates, which only leases make safe. */
  shard?: unknown;
}

/** A run that writes nothing (dry runs, plan): no probe, no claims. */
export const NO_GUARD: Guard = { kind: 'local', why: 'writes nothing' };

/**
 * Probes the live bucket's store once per run (a scratch key in the first plate's backup folder)
 * and says in one log line which guard the run uses. On a store without conditional PUTs,
 * --shard is refused: the local lock cannot keep another host off a plate.
 */
export async function openGuard(store: S3Store, opts: GuardOptions): Promise<Guard> {
  const first = opts.plates[0];
  if (!first) return NO_GUARD;
  const L = plateLayout(opts.layout, first);
  const probe = await probeLeases(store, L, opts.log);
  const ttlMs = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  if (probe.ok) {
    opts.log.info(
      { guard: 'lease', ttlMs, etagForm: probe.form },
      `plates are guarded by S3 leases (${L.tag}.lease in each plate's backup folder)`,
    );
    return { kind: 'lease', form: probe.form, ttlMs, runId: randomBytes(6).toString('hex') };
  }
  const why = `s3://${L.bucket}'s store fails the lease probe (${probe.why})`;
  if (opts.shard !== undefined) {
    throw new UsageError(
      `--shard needs S3 leases, and ${why}: two hosts could take the same plate; run without --shard (one host) on this store`,
    );
  }
  opts.log.info(
    { guard: 'local' },
    `${why}: plates are guarded by a lock in --tmpdir (one host only)`,
  );
  return { kind: 'local', why };
}

/** A plate as its work holds it. */
export interface PlateClaim extends Fence {
  /** The lease's generation (the fencing token); undefined under the local lock. */
  readonly generation: number | undefined;
  /** Fires when the claim is lost: every request of the plate's work listens to it. */
  readonly signal: AbortSignal;
  /** The lease's archive generation before this claim: outputs older than it are stale. */
  readonly priorArchiveGeneration: number;
  /** The loss, once the claim is lost. */
  lost(): LeaseLostError | undefined;
  /**
   * Archive only, before its first output: the local lock takes the tmpdir lock now (throws if a
   * live run holds it); the lease records that this generation writes the plate's outputs.
   */
  beginWrites(): Promise<void>;
  /**
   * Runs `fn` only if no other live run holds the plate; undefined if one does. `tookOver`:
   * the lock of a run that is gone was removed on the way.
   */
  ifExclusive<T>(fn: (tookOver: boolean) => Promise<T>): Promise<T | undefined>;
  release(): Promise<void>;
}

const NEVER = new AbortController().signal;

/** Verify, delete and restore under the local guard: as before, no lock. */
const unguarded: PlateClaim = {
  generation: undefined,
  signal: NEVER,
  priorArchiveGeneration: 0,
  lost: () => undefined,
  assertHeld: () => {},
  beginWrites: async () => {},
  ifExclusive: (fn) => fn(false),
  release: async () => {},
};

/** Archive under the local guard: the tmpdir lock (pid, start time, host), taken before writes. */
class LocalLock implements PlateClaim {
  readonly generation = undefined;
  readonly signal = NEVER;
  readonly priorArchiveGeneration = 0;
  private lock: PlateLock | undefined;

  constructor(
    private readonly tmpdir: string,
    private readonly L: PlateLayout,
    private readonly log: Logger,
  ) {}

  lost = () => undefined;
  assertHeld(): void {}

  async beginWrites(): Promise<void> {
    this.lock = await lockPlate(this.tmpdir, this.L, this.log);
  }

  async ifExclusive<T>(fn: (tookOver: boolean) => Promise<T>): Promise<T | undefined> {
    const lock = await lockPlate(this.tmpdir, this.L, this.log).catch(() => undefined);
    if (!lock) return undefined; // another run of this plate is alive: what is there is its own
    try {
      return await fn(lock.tookOver);
    } finally {
      await lock.release();
    }
  }

  async release(): Promise<void> {
    await this.lock?.release();
    this.lock = undefined;
  }
}

/**
 * A plate under its S3 lease. Archive also keeps the tmpdir lock: the lease keeps other runs off
 * the plate's S3 outputs, the lock keeps another run on this host off its files in the tmpdir
 * (a frozen holder's, say), exactly as without leases.
 */
class LeaseClaim implements PlateClaim {
  constructor(
    private readonly lease: Lease,
    private readonly work: LeaseWork,
    private readonly local: LocalLock | undefined,
  ) {}

  get generation(): number {
    return this.lease.generation;
  }
  get signal(): AbortSignal {
    return this.lease.signal;
  }
  get priorArchiveGeneration(): number {
    return this.lease.priorArchiveGeneration;
  }
  lost = () => this.lease.lost;
  assertHeld = () => this.lease.assertHeld();

  async beginWrites(): Promise<void> {
    if (this.work !== 'archive') return;
    await this.local?.beginWrites();
    await this.lease.beginWrites();
  }

  ifExclusive<T>(fn: (tookOver: boolean) => Promise<T>): Promise<T | undefined> {
    return this.local ? this.local.ifExclusive(fn) : fn(false);
  }

  async release(): Promise<void> {
    await this.local?.release();
    await this.lease.release();
  }
}

export interface ClaimOptions {
  guard: Guard;
  work: LeaseWork;
  log: Logger;
  /** Archive under the local guard: where its lock lives. */
  tmpdir?: string;
  /** Restore writes the user's objects back as they were: no generation on them. */
  stamp?: boolean;
}

/**
 * Claims the plate, runs `fn` with the claim and a store fenced by it (every request listens to
 * the claim's signal; every write is checked first and, for our outputs, records the
 * generation), then releases. A claim lost during `fn` ends the plate with LeaseLostError,
 * whatever `fn` threw when its requests were cut off.
 */
export async function withClaim<T>(
  store: S3Store,
  L: PlateLayout,
  opts: ClaimOptions,
  fn: (claim: PlateClaim, store: S3Store) => Promise<T>,
): Promise<T> {
  if (opts.guard.kind === 'local') {
    const claim =
      opts.work === 'archive' && opts.tmpdir !== undefined
        ? new LocalLock(opts.tmpdir, L, opts.log)
        : unguarded;
    try {
      return await fn(claim, store);
    } finally {
      await claim.release();
    }
  }
  const lease = await acquireLease(store, {
    bucket: L.bucket,
    key: L.leaseKey,
    work: opts.work,
    ttlMs: opts.guard.ttlMs,
    runId: opts.guard.runId,
    form: opts.guard.form,
    log: opts.log,
  });
  const local =
    opts.work === 'archive' && opts.tmpdir !== undefined
      ? new LocalLock(opts.tmpdir, L, opts.log)
      : undefined;
  const claim = new LeaseClaim(lease, opts.work, local);
  const fence: Fence = opts.stamp === false ? { assertHeld: () => lease.assertHeld() } : lease;
  const fenced = store.withSignal(AbortSignal.any([store.signal, lease.signal])).withFence(fence);
  try {
    return await fn(claim, fenced);
  } catch (err) {
    const lost = lease.lost;
    if (lost && err !== lost) throw new LeaseLostError(lost.message, { cause: err });
    throw err;
  } finally {
    await claim.release();
  }
}
