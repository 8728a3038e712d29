// What the main thread and a plate's worker thread say to each other (core/workers).
import {
  ConfigError,
  ForeignOutputsError,
  LeaseHeldError,
  LeaseLostError,
  PlateError,
  UsageError,
  VerificationError,
} from '../../errors.js';
import type { PlateRow } from '../../plates/plates-csv.js';
import type { S3Options } from '../../s3/client.js';
import type { PlateResult } from '../pool.js';
import type { Guard } from '../lifecycle/plate-life.js';
import type { GzipEngineName } from '../../archive/gzip-engine.js';
import type { ArchiveOptions } from '../archive.js';
import type { VerifyOptions } from '../verify.js';
import type { Prepared, RestorePlateOptions } from '../restore/restore.js';

/** archive's options for one plate; what cannot be cloned goes as data (engine name, disk size). */
export interface ArchiveJob {
  command: 'archive';
  opts: Omit<ArchiveOptions, 'log' | 'engine' | 'progress' | 'onPlan' | 'disk'> & {
    engine?: GzipEngineName;
    /** The tmpdir budget's capacity: the budget itself stays on the main thread. */
    diskCapacity?: number;
  };
}

export interface VerifyJob {
  command: 'verify';
  opts: VerifyOptions;
}

/** restore's options for one plate, and what was read of it before anything was written. */
export interface RestoreJob {
  command: 'restore';
  opts: Omit<RestorePlateOptions, 'onPlan' | 'progress'>;
  prep: Prepared;
  /** How the run keeps other runs off its plates (data: the worker claims the plate). */
  guard: Guard;
}

/** Everything a worker needs for one plate, as plain data (posted: a structured clone). */
export interface PlateJob {
  plate: PlateRow;
  s3: S3Options;
  logLevel: string;
  logDir?: string;
  /** The process's compression slot counter, and this worker's own count (compress-limit.ts). */
  compressSlots: SharedArrayBuffer;
  compressHeld: SharedArrayBuffer;
  work: ArchiveJob | VerifyJob | RestoreJob;
}

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
}

export type WorkerMessage =
  /** A line of the plate's log for the run's stderr (or --json), as pino wrote it. */
  | { type: 'log'; line: string }
  /** A line of the run's log (not the plate's): said once per run however many plates say it. */
  | { type: 'run-log'; line: string }
  | { type: 'plan'; bytes: number }
  | { type: 'progress'; bytes: number }
  | { type: 'reserve'; id: number; need: number }
  | { type: 'release'; id: number }
  | { type: 'done'; result: Omit<PlateResult, 'seconds'> }
  | { type: 'failed'; error: SerializedError };

export type MainMessage =
  /** A plate to run: a worker runs one at a time, and is sent the next after its answer. */
  | { type: 'job'; job: PlateJob }
  | { type: 'abort'; reason: string }
  | { type: 'waiting'; id: number }
  | { type: 'reserved'; id: number }
  | { type: 'reserve-failed'; id: number; error: SerializedError };

export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    return { name: err.name, message: err.message, ...(err.stack ? { stack: err.stack } : {}) };
  }
  return { name: 'Error', message: String(err) };
}

/** The typed errors keep their class across the thread boundary: exit codes depend on it. */
const TYPED: Record<string, new (message: string) => Error> = {
  PlateError,
  ForeignOutputsError,
  LeaseLostError,
  LeaseHeldError,
  VerificationError,
  UsageError,
  ConfigError,
};

export function deserializeError(e: SerializedError): Error {
  const Typed = TYPED[e.name];
  const err = Typed ? new Typed(e.message) : new Error(e.message);
  if (!Typed) err.name = e.name;
  if (e.stack) err.stack = e.stack;
  return err;
}
