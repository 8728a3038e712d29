/**
 * restore-request --sources: RestoreObject for every archived source object of the plates, many
 * in flight, each answer written to the ledger (when there is one) as it arrives.
 */
import pLimit from 'p-limit';
import { PlateError, UsageError } from '../../errors.js';
import { plateLayout, type LayoutOptions } from '../../layout/layout.js';
import type { PlateRow } from '../../plates/plates-csv.js';
import { isAbort, s3ErrorCode, type RestoreAnswer, type S3Store } from '../../s3/store.js';
import { poolOptions, runPlates, type PlateResult, type RunOptions } from '../pool.js';
import { checkBuckets } from '../preflight.js';
import { nameSome } from '../sources.js';
import { ledgerSkips, openLedger, type Ledger, type LedgerStatus } from './ledger.js';
import type { PriceTable } from './prices.js';
import { dryRunEstimate, dryRunMessage } from './request.js';
import {
  needsRequest,
  plateSourceObjects,
  SOURCE_HEADS_IN_FLIGHT,
  type ListingTrust,
  type SourceObject,
} from './source-objects.js';
import { takesDays, tierAllowed, type Tier } from './state.js';

/**
 * RestoreObject calls in flight per run: S3 takes about 1000 restore requests per second per
 * account, and 64 requests of a few tens of milliseconds each stay at or under that.
 */
export const RESTORE_REQUESTS_IN_FLIGHT = 64;

/** What requesting takes, with plates (--sources) or a prefix (--prefix). */
export interface RequestOptions {
  tier: Tier;
  days: number;
  dryRun: boolean;
  prices: PriceTable;
  ledger?: string;
  signal: AbortSignal;
}

export interface SourceRequestOptions extends RequestOptions, RunOptions {
  layout: LayoutOptions;
}

const LISTINGS_IN_FLIGHT = 8;

/** What a ledger line says of each RestoreObject answer. */
const ANSWER_STATUS: Record<RestoreAnswer, LedgerStatus> = {
  started: 'requested',
  'already-restored': 'restored',
  'in-progress': 'in-progress',
  'not-archived': 'not-archived',
  'expedited-unavailable': 'error',
};

/** The plates a ledger covers, in words a user can compare with the run they meant. */
export function plateScope(layout: LayoutOptions, plates: PlateRow[]): string {
  const tags = plates.map((p) => plateLayout(layout, p).tag).sort();
  return `sources of plates ${tags.join(',')} in s3://${layout.bucket}`;
}

/** One plate's sources, or a --prefix's objects: what is requested and reported together. */
export interface Looked {
  plateId: string;
  tag: string;
  bucket: string;
  objects: SourceObject[];
  /** What to run to follow the restores; default restore-status --sources --wait. */
  followUp?: string;
}

/** Lists every plate's sources first, so a refused tier stops the run before any request. */
async function lookAll(store: S3Store, opts: SourceRequestOptions, ledger: Ledger | undefined) {
  const skip = (key: string) => ledgerSkips(ledger?.last(key));
  const trust: ListingTrust = { restoreStatusSeen: false };
  const heads = pLimit(SOURCE_HEADS_IN_FLIGHT);
  const limit = pLimit(LISTINGS_IN_FLIGHT);
  return Promise.all(
    opts.plates.map((plate) =>
      limit(async () => {
        const L = plateLayout(opts.layout, plate);
        try {
          return {
            ok: true as const,
            r: {
              plateId: plate.plateId,
              tag: L.tag,
              bucket: L.bucket,
              objects: await plateSourceObjects(store, L, trust, heads, skip),
            },
          };
        } catch (err) {
          if (isAbort(err) || opts.signal.aborted) throw err;
          const e =
            err instanceof PlateError
              ? err
              : new PlateError(
                  `listing its sources failed: ${s3ErrorCode(err)}: ${(err as Error).message}`,
                );
          return { ok: false as const, err: e };
        }
      }),
    ),
  );
}

export function checkSourceTier(looked: Looked[], tier: Tier): void {
  for (const l of looked) {
    const bad = l.objects.find((o) => needsRequest(o) && !tierAllowed(o.cls, tier));
    if (bad) {
      throw new UsageError(
        `--tier ${tier} is not offered for ${bad.cls} (s3://${l.bucket}/${bad.key}); use --tier Standard or Bulk`,
      );
    }
  }
}

async function requestKey(
  store: S3Store,
  bucket: string,
  o: SourceObject,
  opts: RequestOptions,
): Promise<{ status: LedgerStatus; message?: string }> {
  try {
    const answer = await store.restoreObject(bucket, o.key, {
      tier: opts.tier,
      ...(takesDays(o.cls) ? { days: opts.days } : {}),
    });
    return answer === 'expedited-unavailable'
      ? {
          status: 'error',
          message:
            'Expedited capacity not available now (503); run again later or with --tier Standard',
        }
      : { status: ANSWER_STATUS[answer] };
  } catch (err) {
    if (isAbort(err) || opts.signal.aborted) throw err;
    return { status: 'error', message: `${s3ErrorCode(err)}: ${(err as Error).message}` };
  }
}

export async function requestPlate(
  store: S3Store,
  l: Looked,
  opts: RequestOptions,
  ledger: Ledger | undefined,
  requests: ReturnType<typeof pLimit>,
): Promise<Omit<PlateResult, 'seconds'>> {
  const wanted = l.objects.filter(needsRequest);
  const base = {
    plateId: l.plateId,
    tag: l.tag,
    files: l.objects.length,
    bytesIn: wanted.reduce((n, o) => n + o.size, 0),
    bytesOut: 0,
  };
  const skipped = l.objects.filter((o) => o.inLedger);
  const onTheirWay = l.objects.filter((o) => o.state.state === 'in progress' && !o.inLedger).length;
  if (opts.dryRun) {
    const est = dryRunEstimate(
      wanted.map((o) => ({ cls: o.cls, size: o.size })),
      opts.prices,
    );
    return {
      ...base,
      status: 'planned',
      message: dryRunMessage(est, opts.prices),
      details: { requests: wanted.length, inProgress: onTheirWay, estimate: est },
    };
  }
  const send = wanted;
  const answers = await Promise.all(
    send.map((o) =>
      requests(async () => {
        const a = await requestKey(store, l.bucket, o, opts);
        ledger?.record({
          key: o.key,
          status: a.status,
          tier: opts.tier,
          ...(a.message ? { message: a.message } : {}),
        });
        return { key: o.key, ...a };
      }),
    ),
  );
  const count = (s: LedgerStatus) => answers.filter((a) => a.status === s).length;
  const errors = answers.filter((a) => a.status === 'error');
  const details = {
    requested: count('requested'),
    inProgress: count('in-progress') + onTheirWay,
    restored: count('restored'),
    notArchived: count('not-archived'),
    skipped: skipped.length,
    errors: errors.map((e) => ({ key: e.key, message: e.message })),
  };
  if (errors.length > 0) {
    throw new PlateError(
      `${errors.length} of ${send.length} restore request(s) failed (${errors[0]!.message}): ${nameSome(errors.map((e) => e.key))}; ` +
        (ledger
          ? 'run again with the same --ledger to retry only those'
          : 'run again (with --ledger FILE a re-run retries only those)'),
    );
  }
  const pending = details.requested + details.inProgress + skipped.length;
  return {
    ...base,
    status: pending > 0 ? 'requested' : 'readable',
    message:
      pending > 0
        ? `${details.requested} restore(s) requested (${opts.tier}), ${details.inProgress} in progress` +
          (skipped.length > 0 ? `, ${skipped.length} left alone (the ledger has them)` : '') +
          `; ${l.followUp ?? 'follow with imgbackup restore-status --sources --wait'}`
        : 'every source object is readable now',
    details,
  };
}

export async function restoreRequestSources(
  store: S3Store,
  opts: SourceRequestOptions,
): Promise<PlateResult[]> {
  await checkBuckets(store, [opts.layout.bucket]);
  // The ledger is checked against this run before anything is listed or sent.
  const ledger =
    opts.ledger && !opts.dryRun
      ? openLedger(opts.ledger, plateScope(opts.layout, opts.plates))
      : undefined;
  try {
    const looked = await lookAll(store, opts, ledger);
    checkSourceTier(
      looked.flatMap((l) => (l.ok ? [l.r] : [])),
      opts.tier,
    );
    const requests = pLimit(RESTORE_REQUESTS_IN_FLIGHT);
    const byPlate = new Map(opts.plates.map((p, i) => [p, looked[i]!]));
    return await runPlates(
      opts.plates,
      async (plate, signal) => {
        const l = byPlate.get(plate)!;
        if (!l.ok) throw l.err;
        return requestPlate(store.withSignal(signal), l.r, opts, ledger, requests);
      },
      // every plate at once: the request limit, not the plate count, bounds what is in flight
      { ...poolOptions(opts, 'restore-request'), maxProcs: Math.max(opts.plates.length, 1) },
    );
  } finally {
    ledger?.close();
  }
}
