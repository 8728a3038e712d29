import { constants, hostname } from 'node:os';
import { appendFileSync, mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import pLimit from 'p-limit';
import {
  errorMessage,
  Interrupted,
  LeaseHeldError,
  LeaseLostError,
  PlateError,
} from '../errors.js';
import type { PlateRow } from '../plates/plates-csv.js';
import type { Shard } from '../plates/shard.js';
import type { Logger } from '../log/log.js';
import { plateLayout, type LayoutOptions } from '../layout/layout.js';
import type { S3Options } from '../s3/client.js';

export type PlateStatus =
  | 'archived'
  | 'verified'
  | 'collected'
  | 'deleted'
  | 'planned'
  | 'skipped'
  | 'failed'
  | 'mismatch'
  // its lease was lost, or is held by another live run: retry later (exit 75)
  | 'lease lost'
  | 'held'
  | 'interrupted'
  // plan: where a plate stands
  | 'not archived'
  | 'partial'
  // restore-request, restore-status, restore
  | 'requested'
  // archive --restore-sources: its sources are being restored; not archived yet
  | 'waiting'
  | 'restoring'
  | 'not restored'
  | 'readable'
  | 'restored';

export interface PlateResult {
  plateId: string;
  tag: string;
  status: PlateStatus;
  message?: string;
  files: number;
  /** The bytes of those files, where they are not bytesIn (restore reads tarballs in). */
  filesBytes?: number;
  bytesIn: number;
  bytesOut: number;
  seconds: number;
  /** Command-specific facts, rendered by --json. */
  details?: Record<string, unknown>;
}

/** What every plate command's run takes besides its own options. */
export interface RunOptions {
  /** With a shard, only that shard's plates. */
  plates: PlateRow[];
  /** The shard these plates are, when the run has one: the engines may run two copies of it. */
  shard?: Shard;
  maxProcs: number;
  signal: AbortSignal;
  log: Logger;
  /** Job log `<logDir>/<command>.joblog` and one log file per plate. */
  logDir?: string;
  onStart?: (plate: PlateRow) => void;
  onDone?: (result: PlateResult) => void;
  /**
   * How to reach S3: each plate then runs on a worker thread of its own, with its own client
   * from these options (core/workers). Without them plates share this thread's loop and store.
   */
  s3?: S3Options;
  /** --lease-ttl: how long a plate's lease outlives its holder's last renewal. */
  leaseTtlMs?: number;
}

export function poolOptions(
  opts: RunOptions & { layout: LayoutOptions },
  command: string,
): PoolOptions {
  return {
    layout: opts.layout,
    maxProcs: opts.maxProcs,
    signal: opts.signal,
    log: opts.log,
    ...(opts.logDir ? { jobLog: join(opts.logDir, `${command}.joblog`) } : {}),
    ...(opts.onStart ? { onStart: opts.onStart } : {}),
    ...(opts.onDone ? { onDone: opts.onDone } : {}),
  };
}

export interface PoolOptions {
  /** Names each plate's tag (in results and the job log). */
  layout: LayoutOptions;
  maxProcs: number;
  signal: AbortSignal;
  log: Logger;
  /** GNU parallel style job log: one row per plate. */
  jobLog?: string;
  onStart?: (plate: PlateRow) => void;
  onDone?: (result: PlateResult) => void;
}

/**
 * A job log row's Exitval and Signal, as GNU parallel's: the signal that stopped the plate, or
 * else its exit value (an interruption without a signal, such as an unwritable stdout, is a 1).
 */
export function jobLogStatus(status: PlateResult['status'], stoppedBy: unknown): [number, number] {
  if (status === 'interrupted')
    return stoppedBy instanceof Interrupted ? [0, constants.signals[stoppedBy.signal]] : [1, 0];
  if (status === 'failed' || status === 'mismatch') return [1, 0];
  if (status === 'lease lost' || status === 'held') return [75, 0];
  return [0, 0];
}

/**
 * Runs every plate, at most maxProcs at a time. A plate's failure is its own result; the batch
 * goes on. After an interrupt no new plate starts; plates in flight see their signal abort.
 */
export async function runPlates(
  plates: readonly PlateRow[],
  work: (plate: PlateRow, signal: AbortSignal) => Promise<Omit<PlateResult, 'seconds'>>,
  opts: PoolOptions,
): Promise<PlateResult[]> {
  const limit = pLimit(Math.max(1, opts.maxProcs));
  if (opts.jobLog) {
    mkdirSync(join(opts.jobLog, '..'), { recursive: true });
    if (!existsSync(opts.jobLog)) {
      writeFileSync(
        opts.jobLog,
        'Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n',
      );
    }
  }
  let seq = 0;
  const one = async (plate: PlateRow): Promise<PlateResult> => {
    const tag = plateLayout(opts.layout, plate).tag;
    const empty = { plateId: plate.plateId, tag, files: 0, bytesIn: 0, bytesOut: 0 };
    if (opts.signal.aborted) {
      return { ...empty, status: 'interrupted', message: 'not started', seconds: 0 };
    }
    opts.onStart?.(plate);
    const started = Date.now();
    const ctl = new AbortController();
    const signal = AbortSignal.any([opts.signal, ctl.signal]);
    let result: PlateResult;
    try {
      const r = await work(plate, signal);
      result = { ...r, seconds: (Date.now() - started) / 1000 };
    } catch (err) {
      ctl.abort(err);
      const interrupted = opts.signal.aborted;
      if (!(err instanceof PlateError) && !interrupted) {
        opts.log.error({ plate: plate.plateId, err }, 'unexpected error');
      }
      result = {
        ...empty,
        status: interrupted
          ? 'interrupted'
          : err instanceof PlateError && err.name === 'VerificationError'
            ? 'mismatch'
            : err instanceof LeaseLostError
              ? 'lease lost'
              : err instanceof LeaseHeldError
                ? 'held'
                : 'failed',
        message: interrupted ? 'interrupted' : errorMessage(err),
        seconds: (Date.now() - started) / 1000,
      };
    }
    if (opts.jobLog) {
      seq += 1;
      const [exit, sig] = jobLogStatus(result.status, opts.signal.reason);
      appendFileSync(
        opts.jobLog,
        `${seq}\t${hostname()}\t${(started / 1000).toFixed(3)}\t${result.seconds.toFixed(3)}\t0\t0\t${exit}\t${sig}\t${plate.plateId}\n`,
      );
    }
    opts.onDone?.(result);
    return result;
  };
  return Promise.all(plates.map((p) => limit(() => one(p))));
}
