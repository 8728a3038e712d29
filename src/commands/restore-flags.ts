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
