import type { Command } from 'commander';
import type { PlateResult } from '../core/pool.js';
import type { Reporter } from './reporter.js';

/** One subcommand: how its flags are declared, and a plain async handler that returns results. */
export interface CommandSpec {
  name: string;
  define: (program: Command) => Command;
  run: (
    flags: Record<string, unknown>,
    signal: AbortSignal,
    reporter: Reporter,
    version: string,
  ) => Promise<PlateResult[]>;
}
