/**
 * archive --restore-sources: requests the restores the plates' sources need, archives at once the
 * plates that need none, and (with wait) archives the others once their sources are readable.
 */
import type { PlateRow } from '../../plates/plates-csv.js';
import type { S3Store } from '../../s3/store.js';
import { archive, type ArchiveRunOptions } from '../archive.js';
import type { PlateResult } from '../pool.js';
import type { PriceTable } from './prices.js';
import { restoreStatusSources } from './source-status.js';
import { restoreRequestSources } from './source-request.js';
import type { RestoreStatusOptions } from './status.js';
import type { Tier } from './state.js';

export interface ArchiveRestoreOptions extends ArchiveRunOptions {
  restore: { tier: Tier; days: number; prices: PriceTable; ledger?: string };
  wait?: RestoreStatusOptions['wait'];
  onPoll?: RestoreStatusOptions['onPoll'];
}

/** What a plate still restoring says, so the user knows exactly what to run later. */
export const RERUN_LATER =
  'archive it later: run this same imgbackup archive --restore-sources again once ' +
  'imgbackup restore-status --sources says readable (archived plates are skipped), or add --wait';

export async function archiveRestoringSources(
  store: S3Store,
  opts: ArchiveRestoreOptions,
): Promise<PlateResult[]> {
  const quiet = { ...opts, onDone: () => {}, onStart: () => {} };
  const requested = await restoreRequestSources(store, {
    ...quiet,
    ...opts.restore,
    dryRun: false,
  });
  const byId = new Map<string, PlateResult>(requested.map((r) => [r.plateId, r]));
  const final = new Map<string, PlateResult>();
  const done = (r: PlateResult) => {
    final.set(r.plateId, r);
    opts.onDone?.(r);
  };
  const withStatus = (status: string) =>
    opts.plates.filter((p) => byId.get(p.plateId)?.status === status);
  for (const r of requested) if (r.status !== 'readable' && r.status !== 'requested') done(r);

  const archiveNow = (plates: PlateRow[]) =>
    plates.length === 0 ? Promise.resolve([]) : archive(store, { ...opts, plates, onDone: done });
  const waitThenArchive = async (plates: PlateRow[]) => {
    if (plates.length === 0) return;
    if (!opts.wait) {
      for (const p of plates) {
        const r = byId.get(p.plateId)!;
        done({ ...r, status: 'waiting', message: `${r.message}; ${RERUN_LATER}` });
      }
      return;
    }
    const statuses = await restoreStatusSources(store, {
      ...quiet,
      plates,
      wait: opts.wait,
      ...(opts.onPoll ? { onPoll: opts.onPoll } : {}),
      ...(opts.restore.ledger ? { ledger: opts.restore.ledger } : {}),
    });
    const readable = new Set(statuses.filter((s) => s.status === 'readable').map((s) => s.plateId));
    for (const s of statuses) if (!readable.has(s.plateId)) done(s);
    await archiveNow(plates.filter((p) => readable.has(p.plateId)));
  };
  await Promise.all([archiveNow(withStatus('readable')), waitThenArchive(withStatus('requested'))]);
  return opts.plates.map((p) => final.get(p.plateId) ?? byId.get(p.plateId)!);
}
