/**
 * Retrieval prices and waits for restore-request --dry-run. One dated table, in one place;
 * `--prices FILE` replaces it with a JSON file of the same shape (README, "restore-request").
 */
import { readFileSync } from 'node:fs';
import { UsageError } from '../../errors.js';
import type { ArchiveClass, Tier } from './state.js';

export interface TierPrice {
  /** USD per GB retrieved; AWS's "GB" is 2^30 bytes. */
  perGb: number;
  /** USD per 1000 restore requests. */
  per1000Requests: number;
  /** The expected wait, in words AWS uses. */
  wait: string;
}

export interface PriceTable {
  /** When these were read, and from where: a user should see how old an estimate is. */
  asOf: string;
  source: string;
  classes: Partial<Record<Exclude<ArchiveClass, 'none'>, Partial<Record<Tier, TierPrice>>>>;
}

/** AWS S3 list prices, us-east-1, as the S3 pricing page listed them (asOf). */
export const DEFAULT_PRICES: PriceTable = {
  asOf: '2025-01',
  source: 'AWS S3 pricing page, us-east-1 list prices',
  classes: {
    GLACIER: {
      Expedited: { perGb: 0.03, per1000Requests: 10, wait: '1-5 minutes' },
      Standard: { perGb: 0.01, per1000Requests: 0.05, wait: '3-5 hours' },
      Bulk: { perGb: 0, per1000Requests: 0, wait: '5-12 hours' },
    },
    DEEP_ARCHIVE: {
      Standard: { perGb: 0.02, per1000Requests: 0.1, wait: 'within 12 hours' },
      Bulk: { perGb: 0.0025, per1000Requests: 0.025, wait: 'within 48 hours' },
    },
    // Intelligent-Tiering charges no retrieval fee to bring an object back from its archive tiers.
    IT_ARCHIVE: {
      Expedited: { perGb: 0, per1000Requests: 0, wait: '1-5 minutes' },
      Standard: { perGb: 0, per1000Requests: 0, wait: '3-5 hours' },
      Bulk: { perGb: 0, per1000Requests: 0, wait: '5-12 hours' },
    },
    IT_DEEP_ARCHIVE: {
      Standard: { perGb: 0, per1000Requests: 0, wait: 'within 12 hours' },
      Bulk: { perGb: 0, per1000Requests: 0, wait: 'within 48 hours' },
    },
  },
};

const GIB = 1024 ** 3;

export function loadPrices(file: string | undefined): PriceTable {
  if (!file) return DEFAULT_PRICES;
  let parsed: PriceTable;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as PriceTable;
  } catch (err) {
    throw new UsageError(`--prices ${file}: not a readable JSON file (${(err as Error).message})`);
  }
  if (typeof parsed?.asOf !== 'string' || typeof parsed.classes !== 'object' || !parsed.classes) {
    throw new UsageError(
      `--prices ${file}: needs "asOf", "source" and "classes" (the shape README shows)`,
    );
  }
  return parsed;
}

/** The estimate for retrieving `bytes` in `requests` objects of one class at one tier. */
export function estimate(
  table: PriceTable,
  cls: Exclude<ArchiveClass, 'none'>,
  tier: Tier,
  bytes: number,
  requests: number,
): { usd: number; wait: string } | undefined {
  const p = table.classes[cls]?.[tier];
  if (!p) return undefined;
  return { usd: (bytes / GIB) * p.perGb + (requests / 1000) * p.per1000Requests, wait: p.wait };
}
