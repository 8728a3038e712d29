import { CommanderError } from 'commander';
import { ConfigError, LeaseHeldError, LeaseLostError, UsageError } from '../errors.js';
import type { PlateResult } from '../core/pool.js';
import type { OutputLoss } from './outputs.js';

/** Documented in README ("Exit codes"); the only place they are decided. */
export const EXIT = {
  ok: 0,
  platesFailed: 1,
  usage: 2,
  mismatch: 3,
  /** EX_TEMPFAIL: nothing failed, but some plates wait for restores; re-run later. */
  waiting: 75,
  /**
   * EX_TEMPFAIL too: a plate's lease was lost (or is held by another live run); it stopped
   * without writing or deleting anything more. Re-run later: the engines' retry rules name it.
   */
  lease: 75,
  sigint: 130,
  /** What a shell reports for a process SIGPIPE killed: stdout's reader went away. */
  sigpipe: 141,
  sigterm: 143,
} as const;

/** SIGPIPE stands for a closed stdout or stderr: Node ignores the signal itself (EPIPE instead). */
function interruptedCode(by: NodeJS.Signals): number {
  if (by === 'SIGTERM') return EXIT.sigterm;
  return by === 'SIGPIPE' ? EXIT.sigpipe : EXIT.sigint;
}

export function exitCodeForResults(results: PlateResult[], interruptedBy?: NodeJS.Signals): number {
  if (interruptedBy) return interruptedCode(interruptedBy);
  if (results.some((r) => r.status === 'failed' || r.status === 'interrupted'))
    return EXIT.platesFailed;
  if (results.some((r) => r.status === 'mismatch')) return EXIT.mismatch;
  if (results.some((r) => r.status === 'lease lost' || r.status === 'held')) return EXIT.lease;
  if (results.some((r) => r.status === 'waiting')) return EXIT.waiting;
  return EXIT.ok;
}

export function exitCodeForError(err: unknown, interruptedBy?: NodeJS.Signals): number {
  if (interruptedBy) return interruptedCode(interruptedBy);
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (err instanceof UsageError || err instanceof ConfigError) return EXIT.usage;
  if (err instanceof LeaseLostError || err instanceof LeaseHeldError) return EXIT.lease;
  return EXIT.platesFailed;
}

/** A run that ended well but whose output did not reach the user has not ended well. */
export function exitCodeForOutputs(code: number, lost?: OutputLoss): number {
  if (!lost || code !== EXIT.ok) return code;
  return lost.code === 'EPIPE' ? EXIT.sigpipe : EXIT.platesFailed;
}
