/**
 * Typed errors. Each kind maps to one exit code in cli/exit-codes.ts, so commands and core only
 * throw; they never decide how the process ends.
 */

/** Bad flags, bad plates CSV, bad configuration: nothing was attempted. Exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A plate cannot be processed; the batch goes on with the other plates. */
export class PlateError extends Error {
  override name = 'PlateError';
}

/** Outputs found under a plate's tag are another plate's (tags are not unique): never touched. */
export class ForeignOutputsError extends PlateError {
  override name = 'ForeignOutputsError';
}

/** The store answered in a way that stops the whole run (no bucket, no credentials). Exit 2. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** An archive does not match what it claims to hold. Exit 3. */
export class VerificationError extends PlateError {
  override name = 'VerificationError';
}

/**
 * A plate's lease was lost (not renewed in time, or taken over): its work stopped, wrote and
 * deleted nothing more. Exit 75: another run holds or will take the plate; retry later.
 */
export class LeaseLostError extends PlateError {
  override name = 'LeaseLostError';
}

/** A plate's lease is held by another live run: nothing was done to it. Exit 75: retry later. */
export class LeaseHeldError extends PlateError {
  override name = 'LeaseHeldError';
}

/**
 * Why the run's AbortSignal fired: a signal, or SIGPIPE for a closed stdout/stderr. Absent (a
 * plain Error) when the run was stopped for another reason, such as an output it cannot write.
 */
export class Interrupted extends Error {
  override name = 'Interrupted';
  constructor(
    readonly signal: NodeJS.Signals,
    message: string,
  ) {
    super(message);
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
