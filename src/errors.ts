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

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
