/**
 * restore-status --sources: per plate, how many source objects are archived (no restore asked),
 * restoring, readable, and how many requests the ledger says failed. Each look lists the sources
 * (with RestoreStatus asked for) and HEADs only the keys the listing leaves open.
 */
import pLimit from 'p-limit';
import { plateLayout, type LayoutOptions } from '../../layout/layout.js';
import type { PlateRow } from '../../plates/plates-csv.js';
import type { S3Store } from '../../s3/store.js';
import { runPlates, type PlateResult, type RunOptions } from '../pool.js';
import { checkBuckets } from '../preflight.js';
import { nameSome } from '../sources.js';
import { parseLedger, type LedgerLine } from './ledger.js';
import { readFileSync, existsSync } from 'node:fs';
import { UsageError } from '../../errors.js';
import {
  countSources,
  plateSourceObjects,
  SOURCE_HEADS_IN_FLIGHT,
  type ListingTrust,
} from './source-objects.js';
import { plateScope } from './source-request.js';
import { lookPool, pollPlates, type RestoreStatusOptions } from './status.js';

export interface SourceStatusOptions extends RunOptions {
  layout: LayoutOptions;
  wait?: RestoreStatusOptions['wait'];
  onPoll?: RestoreStatusOptions['onPoll'];
  ledger?: string;
}

/** The ledger's last line per key, for counting the errors a re-run of restore-request retries. */
function readLedger(file: string, scope: string): Map<string, LedgerLine> {
  if (!existsSync(file)) throw new UsageError(`--ledger ${file}: no such file`);
  const { header, lines } = parseLedger(readFileSync(file, 'utf8'), file);
  if (header && header.scope !== scope) {
    throw new UsageError(
      `--ledger ${file} was written for ${header.scope}, not for this run's ${scope}; name the ledger restore-request wrote for these plates`,
    );
  }
  return new Map(lines.map((l) => [l.key, l]));
}

async function statusPlate(
  store: S3Store,
  opts: SourceStatusOptions,
  plate: PlateRow,
  trust: ListingTrust,
  heads: ReturnType<typeof pLimit>,
  ledger: Map<string, LedgerLine> | undefined,
): Promise<Omit<PlateResult, 'seconds'>> {
  const L = plateLayout(opts.layout, plate);
  const objects = await plateSourceObjects(store, L, trust, heads);
  const c = countSources(objects);
  const archived = objects.filter((o) => o.state.state === 'not requested');
  const errors = archived.filter((o) => ledger?.get(o.key)?.status === 'error').map((o) => o.key);
  const status = c.archived > 0 ? 'not restored' : c.inProgress > 0 ? 'restoring' : 'readable';
  return {
    plateId: plate.plateId,
    tag: L.tag,
    status,
    message:
      `${c.objects} source object(s): ${c.archived} archived, ${c.inProgress} restoring, ${c.readable} readable, ${errors.length} error(s)` +
      (c.archived > 0
        ? `; not requested: ${nameSome(archived.map((o) => o.key))}; run imgbackup restore-request --sources`
        : ''),
    files: c.objects,
    bytesIn: c.archivedBytes,
    bytesOut: 0,
    details: { ...c, errors: errors.length },
  };
}

export async function restoreStatusSources(
  store: S3Store,
  opts: SourceStatusOptions,
): Promise<PlateResult[]> {
  await checkBuckets(store, [opts.layout.bucket]);
  const ledger = opts.ledger
    ? readLedger(opts.ledger, plateScope(opts.layout, opts.plates))
    : undefined;
  // Shared by every look: once a listing has said RestoreStatus, later looks need fewer HEADs.
  const trust: ListingTrust = { restoreStatusSeen: false };
  const heads = pLimit(SOURCE_HEADS_IN_FLIGHT);
  const once = (plates: PlateRow[], onDone?: RunOptions['onDone']) =>
    runPlates(
      plates,
      (plate, signal) => statusPlate(store.withSignal(signal), opts, plate, trust, heads, ledger),
      lookPool(opts, plates, onDone),
    );
  return pollPlates(opts, once);
}
