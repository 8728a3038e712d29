import { InvalidArgumentError, Option, type Command } from 'commander';
import { WHATS, type What } from '../core/restore/cold-objects.js';
import { TIERS, type Tier } from '../core/restore/state.js';

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "90s", "5m", "12h", "2d" (a bare number is seconds) → milliseconds. */
export function parseDuration(flag: string) {
  return (v: string): number => {
    const m = /^(\d+(?:\.\d+)?)([smhd]?)$/.exec(v.trim());
    if (!m || Number(m[1]) <= 0)
      throw new InvalidArgumentError(`${flag} takes a duration such as 90s, 5m, 12h or 2d`);
    return Number(m[1]) * UNIT_MS[m[2] || 's']!;
  };
}

/** Milliseconds in the largest unit parseDuration reads that divides them: 300000 → "5m". */
export function formatDuration(ms: number): string {
  const whole = Object.entries(UNIT_MS)
    .reverse()
    .find(([, unit]) => ms % unit === 0);
  return whole ? `${ms / whole[1]}${whole[0]}` : `${ms / 1000}s`;
}

/** A duration flag whose help shows its default as a user would write it ("5m", not 300000). */
export function durationOption(
  flags: string,
  description: string,
  defaultMs: number,
  parse: (v: string) => number = parseDuration(flags.split(' ')[0]!),
): Option {
  return new Option(flags, description)
    .argParser(parse)
    .default(defaultMs, formatDuration(defaultMs));
}

/** A repeatable glob flag; absent, the command reads it as no globs (help shows no "[]"). */
export function globListOption(flags: string, description: string): Option {
  return new Option(flags, description).argParser((v: string, prev?: string[]) => [
    ...(prev ?? []),
    v,
  ]);
}

/** --what: which of a plate's two tarballs. */
export function addWhatOption(cmd: Command): Command {
  return cmd.addOption(
    new Option('--what <which>', 'tarballs: all, images (images_illum_analysis) or backend')
      .choices(WHATS as string[])
      .default('all'),
  );
}

export interface RestoreCommonFlags {
  what: What;
}

export function tierOption(): Option {
  return new Option('--tier <tier>', 'retrieval tier')
    .choices(TIERS as string[])
    .default('Standard');
}

export type { Tier };
