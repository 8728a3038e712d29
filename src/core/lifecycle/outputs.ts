import { PlateError } from '../../errors.js';
import { optionalOutputKeys, outputKeys, type PlateLayout } from '../../layout/layout.js';
import type { Logger } from '../../log/log.js';
import { CLEANUP_TIMEOUT_MS, s3ErrorCode, type S3Store } from '../../s3/store.js';
import { abortStaleUploads, removeStaleLocal } from '../resume.js';
import { nameSome } from '../sources.js';
import type { PlateClaim } from './plate-life.js';

/** Where a plate's archive outputs stand, as archive found them under its claim. */
export interface OutputState {
  /** Every output key, the optional ones, and the in-progress marker last. */
  probed: { bucket: string; key: string }[];
  present: boolean[];
  /** Every output is there, and (where they record one) from one current generation. */
  complete: boolean;
  /** The in-progress marker is there. */
  interrupted: boolean;
  /** Why outputs that are all there are still partial: a fenced-off writer's late object. */
  stale?: string;
  /** Every output that is there records a lease generation: imgbackup wrote them. */
  leased: boolean;
}

/**
 * Outputs that disagree on the generation that wrote them, or whose generation is older than
 * the lease's last archive, are a fenced-off writer's (its late objects): never complete. An
 * output that records no generation was not written under a lease (older versions, the bash
 * script, a copy in place that replaced its metadata): today's rules judge it, as before.
 */
export function staleGenerations(
  gens: (number | undefined)[],
  archiveGeneration: number,
): string | undefined {
  const known = [...new Set(gens.filter((g): g is number => g !== undefined))];
  if (known.length === 0) return undefined;
  if (known.length > 1)
    return `its outputs were written by different lease generations (${known.join(', ')})`;
  const g = known[0]!;
  if (g < archiveGeneration)
    return `its outputs were written by lease generation ${g}, older than the lease's last archive (${archiveGeneration})`;
  return undefined;
}

export async function probeOutputs(
  store: S3Store,
  L: PlateLayout,
  claim: PlateClaim,
): Promise<OutputState> {
  const outputs = outputKeys(L);
  // The ETag listing and indexes are ours alone (old archives lack them): they never decide
  // "complete", but a stray one does make an archive partial. The in-progress marker says whose
  // partial it is.
  const probed = [...outputs, ...optionalOutputKeys(L), { bucket: L.bucket, key: L.inProgressKey }];
  const heads = await Promise.all(probed.map((o) => store.head(o.bucket, o.key)));
  const present = heads.map((h) => h !== undefined);
  const found = heads.slice(0, -1).filter((h) => h !== undefined);
  const stale = staleGenerations(
    found.map((h) => h.generation),
    claim.priorArchiveGeneration,
  );
  return {
    probed,
    present,
    complete: present.slice(0, outputs.length).every(Boolean) && stale === undefined,
    interrupted: present[probed.length - 1] === true,
    ...(stale ? { stale } : {}),
    leased: found.length > 0 && found.every((h) => h.generation !== undefined),
  };
}

/** What a re-run on a complete plate tidied: nothing, a dead run's lock, or its marker too. */
export type Tidied = 'nothing' | 'lock' | 'marker';

/**
 * A plate archived completely by a run that was killed before it tidied up: before removing
 * its in-progress marker (`interrupted`), or after, before removing its lock and local
 * tarballs. Removes what is left, unless another live run holds the plate.
 */
export async function tidyCompleted(
  store: S3Store,
  claim: PlateClaim,
  interrupted: boolean,
  dirs: { tmpdir: string; L: PlateLayout },
  log: Logger,
  runLog: Logger,
): Promise<Tidied> {
  const { tmpdir, L } = dirs;
  const done = await claim.ifExclusive(async (tookOver): Promise<Tidied> => {
    await removeStaleLocal(tmpdir, L);
    if (!interrupted) return tookOver ? 'lock' : 'nothing';
    await abortStaleUploads(store, L, log, runLog);
    const r = await store.deleteBatch(L.bucket, [{ key: L.inProgressKey }]);
    return r.errors.length === 0 ? 'marker' : tookOver ? 'lock' : 'nothing';
  });
  return done ?? 'nothing';
}

/** Complete since the delete script landed; a marker left behind only costs a warning. */
export async function clearMarker(store: S3Store, L: PlateLayout, log: Logger): Promise<void> {
  const cleared = await store
    .deleteBatch(L.bucket, [{ key: L.inProgressKey }])
    .then((r) => r.errors.length === 0)
    .catch(() => false);
  if (!cleared) log.warn({ key: L.inProgressKey }, 'could not remove the in-progress marker');
}

/**
 * Removes `keys` (a plate's outputs), the in-progress marker last and only once every other key
 * is gone: while any is left, the marker stays, so a re-run knows the partial archive is ours
 * and redoes it. Returns what could not be removed and what to do, or undefined if all is gone.
 */
export async function removeOutputs(
  store: S3Store,
  L: PlateLayout,
  keys: { bucket: string; key: string }[],
  log: Logger,
): Promise<string | undefined> {
  const cleanup = store.withSignal(AbortSignal.timeout(CLEANUP_TIMEOUT_MS));
  const marker = (k: { bucket: string; key: string }) =>
    k.bucket === L.bucket && k.key === L.inProgressKey;
  const failed: { url: string; code: string }[] = [];
  const remove = async (bucket: string, batch: string[]) => {
    if (batch.length === 0) return;
    try {
      const r = await cleanup.deleteBatch(
        bucket,
        batch.map((key) => ({ key })),
      );
      const gone = new Set(r.deleted);
      const code = new Map(r.errors.map((e) => [e.key, e.code] as const));
      for (const key of batch) {
        if (!gone.has(key))
          failed.push({ url: `s3://${bucket}/${key}`, code: code.get(key) ?? 'not in the answer' });
      }
    } catch (err) {
      for (const key of batch)
        failed.push({ url: `s3://${bucket}/${key}`, code: s3ErrorCode(err) });
    }
  };
  for (const bucket of [L.coldBucket, L.bucket]) {
    await remove(
      bucket,
      keys.filter((k) => k.bucket === bucket && !marker(k)).map((k) => k.key),
    );
  }
  const others = failed.length;
  if (others === 0 && keys.some(marker)) await remove(L.bucket, [L.inProgressKey]);
  if (failed.length === 0) return undefined;
  log.error({ failed }, 'failure cleanup could not remove these outputs');
  const codes = [...new Set(failed.map((f) => f.code))].join(', ');
  if (others === 0) {
    return `could not remove its in-progress marker ${failed[0]!.url} (${codes}); harmless: a re-run of archive removes it`;
  }
  const kept = keys.some(marker)
    ? `; s3://${L.bucket}/${L.inProgressKey} is kept, so a re-run of archive removes them and redoes the plate`
    : '';
  return `could not remove ${others} of its outputs (${codes}): ${nameSome(failed.map((f) => f.url))}${kept}; or remove them by hand`;
}

/**
 * Before writing: an interrupted run's partial outputs (its marker is there, or every output
 * records a lease generation) are removed; anyone else's partial archive is refused.
 */
export function refuseForeignPartial(state: OutputState): void {
  const partial = state.present.some(Boolean);
  if (!partial || state.interrupted || state.leased) return;
  const have = state.probed
    .filter((_, i) => state.present[i])
    .map((o) => `s3://${o.bucket}/${o.key}`);
  throw new PlateError(
    `a partial archive not made by an interrupted imgbackup run is there (${nameSome(have)}); not touching it: check it, remove those keys, then re-run`,
  );
}
