import pLimit from 'p-limit';
import { PlateError, UsageError } from '../../errors.js';
import type { LayoutOptions } from '../../layout/layout.js';
import type { PlateRow } from '../../plates/plates-csv.js';
import type { RestoreAnswer, S3Store } from '../../s3/store.js';
import { poolOptions, runPlates, type PlateResult, type RunOptions } from '../pool.js';
import { checkBuckets } from '../preflight.js';
import { coldObjects, type ColdObject, type PlateColdObjects, type What } from './cold-objects.js';
import { estimate, type PriceTable } from './prices.js';
import {
  describeState,
  isReadable,
  takesDays,
  tierAllowed,
  TIERS,
  type ArchiveClass,
  type Tier,
} from './state.js';

export interface RestoreRequestOptions extends RunOptions {
  layout: LayoutOptions;
  what: What;
  tier: Tier;
  days: number;
  dryRun: boolean;
  prices: PriceTable;
}

/** Objects a restore request would send RestoreObject for: archived, not readable, not on its way. */
function toRequest(p: PlateColdObjects): ColdObject[] {
  return p.objects.filter((o) => o.cls !== 'none' && o.state.state !== 'in progress');
}

/** Objects whose bytes would be retrieved (a ready copy only has its expiry extended). */
function toRetrieve(p: PlateColdObjects): ColdObject[] {
  return toRequest(p).filter((o) => !isReadable(o.state));
}

/** Each class's bytes and object count to retrieve, and per tier its wait and estimated cost. */
export function dryRunEstimate(objects: { cls: ArchiveClass; size: number }[], table: PriceTable) {
  const byClass = new Map<string, { bytes: number; objects: number }>();
  for (const o of objects) {
    const c = byClass.get(o.cls) ?? { bytes: 0, objects: 0 };
    c.bytes += o.size;
    c.objects += 1;
    byClass.set(o.cls, c);
  }
  return [...byClass].map(([cls, c]) => ({
    cls,
    ...c,
    tiers: TIERS.flatMap((tier) => {
      const e = estimate(table, cls as Exclude<ArchiveClass, 'none'>, tier, c.bytes, c.objects);
      return e ? [{ tier, wait: e.wait, usd: e.usd }] : [];
    }),
  }));
}

export function dryRunMessage(est: ReturnType<typeof dryRunEstimate>, table: PriceTable): string {
  if (est.length === 0) return 'nothing to retrieve';
  const parts = est.map(
    (c) =>
      `${c.objects} object(s), ${c.bytes} bytes from ${c.cls}: ` +
      c.tiers.map((t) => `${t.tier} ${t.wait} ~$${t.usd.toFixed(2)}`).join(', '),
  );
  return `${parts.join('; ')} (prices as of ${table.asOf})`;
}

async function requestOne(
  store: S3Store,
  o: ColdObject,
  opts: RestoreRequestOptions,
  bucket: string,
): Promise<RestoreAnswer> {
  return store.restoreObject(bucket, o.key, {
    tier: opts.tier,
    ...(takesDays(o.cls) ? { days: opts.days } : {}),
  });
}

async function requestPlate(
  store: S3Store,
  p: PlateColdObjects,
  opts: RestoreRequestOptions,
): Promise<Omit<PlateResult, 'seconds'>> {
  const { L } = p;
  const objects = p.objects.map((o) => ({
    key: o.key,
    storageClass: o.head.storageClass ?? 'STANDARD',
    size: o.head.size,
    state: describeState(o.state),
  }));
  const retrieve = toRetrieve(p);
  const base = {
    plateId: L.plate.plateId,
    tag: L.tag,
    files: p.objects.length,
    bytesIn: retrieve.reduce((n, o) => n + o.head.size, 0),
    bytesOut: 0,
  };
  if (opts.dryRun) {
    const est = dryRunEstimate(
      retrieve.map((o) => ({ cls: o.cls, size: o.head.size })),
      opts.prices,
    );
    return {
      ...base,
      status: 'planned',
      message: dryRunMessage(est, opts.prices),
      details: { objects, estimate: est, pricesAsOf: opts.prices.asOf },
    };
  }
  const answers: Record<string, RestoreAnswer> = {};
  for (const o of toRequest(p)) answers[o.key] = await requestOne(store, o, opts, L.coldBucket);
  const unavailable = Object.keys(answers).filter((k) => answers[k] === 'expedited-unavailable');
  if (unavailable.length > 0) {
    throw new PlateError(
      `Expedited retrieval capacity is not available now (503 GlacierExpeditedRetrievalNotAvailable) ` +
        `for ${unavailable.join(', ')}: run again later, or with --tier Standard`,
    );
  }
  const pending = p.objects.filter(
    (o) =>
      o.state.state === 'in progress' || ['started', 'in-progress'].includes(answers[o.key] ?? ''),
  );
  return {
    ...base,
    status: pending.length > 0 ? 'requested' : 'readable',
    message:
      pending.length > 0
        ? `${pending.length} object(s) restoring (${opts.tier}); follow with imgbackup restore-status --wait`
        : 'every tarball is readable now',
    details: { objects: objects.map((o) => ({ ...o, answer: answers[o.key] ?? 'none needed' })) },
  };
}

/** Refuses, before any request is sent, a tier that an object's class does not offer. */
function checkTier(plates: PlateColdObjects[], tier: Tier): void {
  for (const p of plates) {
    const bad = toRetrieve(p).find((o) => !tierAllowed(o.cls, tier));
    if (bad) {
      throw new UsageError(
        `--tier ${tier} is not offered for ${bad.cls} (s3://${p.L.coldBucket}/${bad.key}); use --tier Standard or Bulk`,
      );
    }
  }
}

/**
 * Looks at every plate first (HeadObject of each tarball and sidecar), so that a tier refused for
 * one object stops the run before any request is sent; then requests per plate.
 */
export async function restoreRequest(
  store: S3Store,
  opts: RestoreRequestOptions,
): Promise<PlateResult[]> {
  await checkBuckets(store, [opts.layout.coldBucket]);
  const limit = pLimit(Math.max(1, opts.maxProcs));
  const looked = await Promise.all(
    opts.plates.map((plate) =>
      limit(() =>
        coldObjects(store, opts.layout, plate, opts.what).then(
          (r) => ({ ok: true as const, r }),
          (err: unknown) => ({ ok: false as const, err }),
        ),
      ),
    ),
  );
  for (const l of looked) if (!l.ok && !(l.err instanceof PlateError)) throw l.err;
  checkTier(
    looked.flatMap((l) => (l.ok ? [l.r] : [])),
    opts.tier,
  );
  const byPlate = new Map<PlateRow, (typeof looked)[number]>();
  opts.plates.forEach((p, i) => byPlate.set(p, looked[i]!));
  return runPlates(
    opts.plates,
    async (plate, signal) => {
      const l = byPlate.get(plate)!;
      if (!l.ok) throw l.err;
      return requestPlate(store.withSignal(signal), l.r, opts);
    },
    poolOptions(opts, 'restore-request'),
  );
}
