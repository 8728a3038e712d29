import { rename, writeFile } from 'node:fs/promises';
import { PlateError, UsageError } from '../errors.js';
import {
  fileFolderClashes,
  unsafeKeyReason,
  type LayoutOptions,
  type PlateLayout,
} from '../layout/layout.js';
import { withPlateLog, type Logger } from '../log/log.js';
import type { PlateRow } from '../plates/plates-csv.js';
import { deleteScript, deletesByName, DELETE_BATCH } from '../integrity/listings.js';
import { httpStatus, type DeleteTarget, type ObjectInfo, type S3Store } from '../s3/store.js';
import { checkOwnership, resolveLayout } from './archive-state.js';
import { poolOptions, runPlates, type PlateResult, type RunOptions } from './pool.js';
import { checkBuckets } from './preflight.js';
import { isFolderMarker, namePairs, nameSome } from './sources.js';
import { readVerifiedRecord, type VerifiedRecord } from './verify.js';
import { probeConditionalDelete, recheckBatch, needsRecheck } from './conditional-delete.js';
import { NO_GUARD, openGuard, withClaim } from './lifecycle/plate-life.js';

export interface PlanLine {
  plate: string;
  bucket: string;
  key: string;
  size: number;
  etag: string;
  /** On a versioned bucket: the version archived, the one deleted. */
  versionId?: string;
}

interface RunBase extends RunOptions {
  layout: LayoutOptions;
}

/**
 * A plate's passing verification record, checked to still describe its archive: it must be
 * newer than each tarball and listing and name their current ETags, so an output replaced
 * or altered after the verify is never trusted.
 */
async function currentRecord(store: S3Store, L: PlateLayout): Promise<VerifiedRecord> {
  const record = await readVerifiedRecord(store, L);
  if (!record)
    throw new PlateError('not verified: run `imgbackup verify` first (or --force-unverified)');
  if (record.passed === false)
    throw new PlateError(
      `not verified: the last verify (${record.time}) failed: ${record.problem}; fix that and run \`imgbackup verify\` again`,
    );
  if (record.passed !== true)
    throw new PlateError(
      `not verified: s3://${L.bucket}/${L.verifiedKey} was written by an older imgbackup and does not say it passed; run \`imgbackup verify\` again`,
    );
  // Compared with an invalid date, no output would ever look newer than the record.
  if (Number.isNaN(Date.parse(record.time)))
    throw new PlateError(
      `not verified: s3://${L.bucket}/${L.verifiedKey} has no valid time (${JSON.stringify(record.time)}); run \`imgbackup verify\` again`,
    );
  for (const t of L.tarballs) {
    const head = await store.head(L.coldBucket, t.key);
    const seen = record.tarballs.find((r) => r.key === t.key);
    if (!head || !seen || seen.etag !== head.etag || head.lastModified > new Date(record.time)) {
      throw new PlateError(
        `${t.fileName} changed since it was verified; run \`imgbackup verify\` again`,
      );
    }
  }
  // A listing rewritten after the pass (one whose failed verify could not replace the record)
  // is not what was proven.
  for (const key of [L.s3ListingKey, L.tarListingKey]) {
    const head = await store.head(L.bucket, key);
    const seen = record.listings.find((r) => r.key === key);
    if (!head || !seen || seen.etag !== head.etag || head.lastModified > new Date(record.time)) {
      throw new PlateError(
        `s3://${L.bucket}/${key} ${head ? 'changed' : 'is gone'} since the plate was verified; run \`imgbackup verify\` again`,
      );
    }
  }
  return record;
}

export interface CollectOptions extends RunBase {
  out: string;
  planOut: string;
}

/**
 * The runbook's collect step: a delete script made from each plate's verification record (exactly
 * the keys, and versions, `delete` would delete; not the plate's own script, which names what was
 * archived, verified or not), and the delete plan (JSON lines of the same keys). Both are written
 * only when every plate succeeded, so a partial file is never presented as the whole batch.
 */
export async function collectDeletes(
  store: S3Store,
  opts: CollectOptions,
): Promise<{ results: PlateResult[]; written: boolean }> {
  await checkBuckets(store, [opts.layout.bucket, opts.layout.coldBucket]);
  const scripts = new Map<string, string>();
  const plans = new Map<string, PlanLine[]>();
  const results = await runPlates(
    opts.plates,
    async (plate, signal) => {
      const s = store.withSignal(signal);
      const L = await resolveLayout(s, opts.layout, plate);
      await checkOwnership(s, opts.layout, L);
      const record = await currentRecord(s, L);
      // The script runs with the aws CLI, which has no guard of its own.
      refuseOutside(L, record.objects);
      scripts.set(plate.plateId, deleteScript(L.bucket, record.objects));
      plans.set(
        plate.plateId,
        record.objects.map((o) => ({ plate: plate.plateId, bucket: L.bucket, ...o })),
      );
      const bytes = record.objects.reduce((n, o) => n + o.size, 0);
      return {
        plateId: plate.plateId,
        tag: L.tag,
        status: 'collected',
        files: record.objects.length,
        bytesIn: bytes,
        bytesOut: 0,
      };
    },
    poolOptions(opts, 'collect-deletes'),
  );
  if (results.some((r) => r.status !== 'collected')) return { results, written: false };
  // In CSV order, like `cat delete_s3/*` of the runbook but deterministic.
  const script = opts.plates.map((p) => scripts.get(p.plateId) ?? '').join('');
  const plan = opts.plates
    .flatMap((p) => plans.get(p.plateId) ?? [])
    .map((l) => `${JSON.stringify(l)}\n`)
    .join('');
  await writeAtomically(opts.out, script);
  await writeAtomically(opts.planOut, plan);
  return { results, written: true };
}

/** Through `path.partial` and a rename: a reader never sees half a file. */
export async function writeAtomically(path: string, text: string): Promise<void> {
  const tmp = `${path}.partial`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

export function parsePlan(text: string, file: string): PlanLine[] {
  return text
    .split('\n')
    .map((line, i) => ({ line, n: i + 1 }))
    .filter(({ line }) => line.trim() !== '')
    .map(({ line, n }) => {
      try {
        const v = JSON.parse(line) as PlanLine;
        if (
          typeof v.plate !== 'string' ||
          typeof v.bucket !== 'string' ||
          typeof v.key !== 'string' ||
          typeof v.size !== 'number' ||
          // The ETag archived is what every delete is conditioned on: a line without one (a
          // dry run's --list) would delete whatever bytes the key holds by then.
          typeof v.etag !== 'string' ||
          v.etag === '' ||
          (v.versionId !== undefined && typeof v.versionId !== 'string')
        ) {
          throw new Error(
            'needs plate, bucket, key, size, etag (and versionId, if any, a string); make the plan with collect-deletes',
          );
        }
        return v;
      } catch (err) {
        throw new UsageError(`${file}:${n}: not a plan line (${(err as Error).message})`);
      }
    });
}

export interface DeleteOptions extends RunBase {
  dryRun: boolean;
  forceUnverified: boolean;
  plan?: PlanLine[];
  /** Asked once with the totals of every plate, before anything is deleted. */
  confirm: (totals: { plates: number; keys: number; bytes: number }) => Promise<boolean>;
  /** Each key a dry run would delete. */
  onWouldDelete?: (plateId: string, bucket: string, key: string, size: number) => void;
  /** A line about the whole run (e.g. that the store offers no conditional delete). */
  onNote?: (text: string) => void;
}

type PlanKey = DeleteTarget & { size: number; etag: string };

interface PlatePlan {
  L: PlateLayout;
  keys: PlanKey[];
  skipped: string[];
  gone: number;
  /** The passing record the plan was made from: it must still be there under the lease. */
  recordTime?: string;
  /** The record was checked against the tarballs and listings (not --force-unverified). */
  proven: boolean;
}

/**
 * Deletes exactly the archived keys of verified plates: never a prefix, never a key outside the
 * plate's four sources, never a key whose size or ETag changed since the archive. Plans every
 * plate first, asks once, then deletes in batches of 1000 with each key's expected ETag.
 */
export async function deletePlates(store: S3Store, opts: DeleteOptions): Promise<PlateResult[]> {
  await checkBuckets(store, [opts.layout.bucket, opts.layout.coldBucket]);
  // Before planning: --shard on a store without leases is refused before anything is asked.
  const guard = opts.dryRun ? NO_GUARD : await openGuard(store, opts);
  const plans = new Map<string, PlatePlan>();
  const planned = await runPlates(
    opts.plates,
    async (plate, signal) => {
      const plan = await planPlate(store.withSignal(signal), opts, plate);
      plans.set(plate.plateId, plan);
      const bytes = plan.keys.reduce((n, k) => n + k.size, 0);
      return {
        plateId: plate.plateId,
        tag: plan.L.tag,
        status: 'planned',
        files: plan.keys.length,
        bytesIn: bytes,
        bytesOut: 0,
        ...(plan.skipped.length
          ? { message: `skipping changed keys: ${nameSome(plan.skipped)}` }
          : {}),
      };
    },
    { layout: opts.layout, maxProcs: opts.maxProcs, signal: opts.signal, log: opts.log },
  );
  const ok = planned.filter((r) => r.status === 'planned');
  const totals = {
    plates: ok.length,
    keys: ok.reduce((n, r) => n + r.files, 0),
    bytes: ok.reduce((n, r) => n + r.bytesIn, 0),
  };
  const failedPlanning = new Map(
    planned.filter((r) => r.status !== 'planned').map((r) => [r.plateId, r]),
  );
  if (opts.dryRun) {
    for (const r of ok) {
      const p = plans.get(r.plateId)!;
      for (const k of p.keys) opts.onWouldDelete?.(r.plateId, p.L.bucket, k.key, k.size);
    }
    return planned.map((r) => {
      const res =
        r.status === 'planned'
          ? {
              ...r,
              status: 'planned' as const,
              message: `dry run: would delete ${r.files} keys${r.message ? `; ${r.message}` : ''}`,
            }
          : r;
      opts.onDone?.(res);
      return res;
    });
  }
  if (totals.keys > 0 && !(await opts.confirm(totals))) {
    return planned.map((r) => {
      const res =
        r.status === 'planned' ? { ...r, status: 'skipped' as const, message: 'not confirmed' } : r;
      opts.onDone?.(res);
      return res;
    });
  }
  const toDelete = ok.map((r) => plans.get(r.plateId)!);
  const recheck = await mustRecheck(store, opts, toDelete);
  return runPlates(
    opts.plates,
    async (plate, signal) => {
      const failed = failedPlanning.get(plate.plateId);
      if (failed) {
        if (failed.status === 'failed') throw new PlateError(failed.message ?? 'failed');
        return failed;
      }
      const plan = plans.get(plate.plateId)!;
      // No delete while another run archives or verifies the plate: its lease is waited for
      // (up to its TTL + margin), then the plate fails with exit 75, nothing deleted.
      return withPlateLog(opts.log, plate.plateId, opts.logDir, (log) =>
        withClaim(
          store.withSignal(signal),
          plan.L,
          { guard, work: 'delete', log },
          async (_claim, s) => {
            await recordStillThere(s, plan);
            return executePlan(s, plan, plate, log, recheck);
          },
        ),
      );
    },
    poolOptions(opts, 'delete'),
  );
}

async function planPlate(store: S3Store, opts: DeleteOptions, plate: PlateRow): Promise<PlatePlan> {
  const L = await resolveLayout(store, opts.layout, plate);
  await checkOwnership(store, opts.layout, L);
  let wanted: { key: string; size: number; etag: string; versionId?: string; bucket?: string }[];
  let record: VerifiedRecord | undefined;
  if (opts.forceUnverified) {
    const found = await readVerifiedRecord(store, L);
    record = found?.passed === true ? found : undefined;
  } else {
    record = await currentRecord(store, L);
  }
  if (opts.plan) {
    wanted = opts.plan.filter((l) => l.plate === plate.plateId);
    if (wanted.length === 0)
      throw new PlateError(
        'the plan has no keys for this plate; use the plan collect-deletes wrote for this CSV',
      );
  } else if (record) {
    wanted = record.objects;
  } else {
    throw new PlateError('no verification record to take keys from; pass --plan or run verify');
  }
  refuseOutside(L, wanted);
  if (opts.plan && record && !opts.forceUnverified) {
    const id = (o: { key: string; size: number; etag: string; versionId?: string }) =>
      `${o.key}\t${o.size}\t${o.etag}\t${o.versionId ?? ''}`;
    const verified = new Set(record.objects.map(id));
    const unverified = wanted.filter((w) => !verified.has(id(w)));
    if (unverified.length > 0) {
      throw new PlateError(
        `plan keys not in the verified archive: ${nameSome(unverified.map((u) => u.key))}; make a fresh plan with collect-deletes`,
      );
    }
  }
  // What is there now: a key that changed since the archive is skipped, never deleted.
  const now = new Map<string, ObjectInfo>();
  for (const s of L.sources)
    for await (const o of store.list(L.bucket, s.prefix)) now.set(o.key, o);
  refuseClashes(wanted, now.keys());
  const keys: PlanKey[] = [];
  const skipped: string[] = [];
  let gone = 0;
  for (const w of wanted) {
    const cur = await archivedNow(store, L.bucket, w, now.get(w.key));
    if (!cur) gone += 1;
    else if (cur.size !== w.size || cur.etag !== w.etag) skipped.push(w.key);
    else {
      // The version archived where one was recorded, whatever a store's HEAD answers.
      const versionId = w.versionId ?? cur.versionId;
      keys.push({
        key: w.key,
        size: w.size,
        etag: w.etag,
        ...(versionId !== undefined ? { versionId } : {}),
      });
    }
  }
  return {
    L,
    keys,
    skipped,
    gone,
    ...(record ? { recordTime: record.time } : {}),
    proven: !opts.forceUnverified,
  };
}

/** A tampered plan or record must not reach other data: every key stays inside its sources. */
function refuseOutside(L: PlateLayout, wanted: { key: string; bucket?: string }[]): void {
  const outside = wanted.filter(
    (w) =>
      (w.bucket !== undefined && w.bucket !== L.bucket) ||
      isFolderMarker(w) ||
      !L.sources.some((s) => unsafeKeyReason(s, w.key) === undefined),
  );
  if (outside.length > 0) {
    throw new PlateError(
      `refusing keys outside the plate's four sources: ${nameSome(outside.map((o) => o.key))}; the plan or record was altered: make a fresh one with collect-deletes`,
    );
  }
}

/**
 * The object a plan line stands for, as it is now: the version archived where one was recorded
 * (current or not: a version written later is another object, kept), else the current object
 * (on a versioned bucket with its version id, so the delete frees it instead of hiding it).
 */
async function archivedNow(
  store: S3Store,
  bucket: string,
  w: { key: string; versionId?: string },
  current: ObjectInfo | undefined,
): Promise<ObjectInfo | undefined> {
  if (w.versionId === undefined || current?.versionId === w.versionId) return current;
  return headThere(store, bucket, w.key, w.versionId);
}

/** The object or version, or undefined if it is not there (nothing, or a delete marker). */
async function headThere(
  store: S3Store,
  bucket: string,
  key: string,
  versionId: string | undefined,
): Promise<ObjectInfo | undefined> {
  return store.head(bucket, key, versionId).catch((err: unknown) => {
    // A version id that names a delete marker answers 405, not 404: the object is not there.
    if (httpStatus(err) === 405) return undefined;
    throw err;
  });
}

/**
 * Whether each batch's keys must be checked again just before it is sent: only where the store
 * ignores DeleteObjects' per-key ETag (asked once per run, on a scratch key of ours) and some key
 * is deleted by name alone (no version id, or the `null` version a later write replaces).
 */
async function mustRecheck(
  store: S3Store,
  opts: DeleteOptions,
  plans: PlatePlan[],
): Promise<boolean> {
  const first = plans.find((p) => p.keys.some(needsRecheck));
  if (!first) return false;
  const honoured = await probeConditionalDelete(store, first.L, opts.log);
  if (honoured) return false;
  opts.onNote?.(
    `s3://${first.L.bucket}: the store offers no conditional delete (it ignores DeleteObjects' ETag); each batch's keys are checked again (HEAD: size, ETag, version) just before it is sent, but a write between that check and the delete is not caught`,
  );
  return true;
}

/**
 * Even with --force-unverified: a key that `tar x` cannot restore beside another (a file `a` and
 * `a/b` or `a/`) is never deleted, since its restore would silently lose the file.
 */
function refuseClashes(wanted: { key: string }[], present: Iterable<string>): void {
  const keys = new Set(wanted.map((w) => w.key));
  const clashes = fileFolderClashes(new Set([...keys, ...present])).filter(
    ([a, b]) => keys.has(a) || keys.has(b),
  );
  if (clashes.length > 0) {
    throw new PlateError(
      `refusing keys that tar cannot both restore (the file would be lost on restore): ${namePairs(clashes)}; rename one of each pair and archive the plate again`,
    );
  }
}

/**
 * The passing record the plan was made from, still there now that the plate is held, and (but
 * for --force-unverified) still describing the archive: while the delete was planned or waited
 * at its prompt, another run could have redone the archive, removing the tarballs it proved.
 */
async function recordStillThere(store: S3Store, plan: PlatePlan): Promise<void> {
  if (plan.recordTime === undefined) return;
  const now = plan.proven
    ? await currentRecord(store, plan.L)
    : await readVerifiedRecord(store, plan.L);
  if (now?.passed !== true || now.time !== plan.recordTime) {
    throw new PlateError(
      `s3://${plan.L.bucket}/${plan.L.verifiedKey} changed since the delete was planned (another run verified the plate meanwhile); nothing deleted: re-run delete`,
    );
  }
}

/** One DeleteObjects, each key deleted by name conditioned on its archived ETag (deletesByName). */
async function sendBatch(
  store: S3Store,
  bucket: string,
  batch: PlanKey[],
): Promise<{ deleted: number; bytes: number; changed: string[]; gone: number; errors: string[] }> {
  const targets = batch.map((k) => (deletesByName(k) ? k : { key: k.key, versionId: k.versionId }));
  const r = await store.deleteBatch(bucket, targets);
  const done = new Set(r.deleted);
  const out = { deleted: 0, bytes: 0, changed: [] as string[], gone: 0, errors: [] as string[] };
  for (const k of batch) {
    if (!done.has(k.key)) continue;
    out.deleted += 1;
    out.bytes += k.size;
  }
  const byKey = new Map(batch.map((k) => [k.key, k]));
  for (const e of r.errors) {
    const k = byKey.get(e.key);
    // Refused by its ETag, or not found: it changed since the plan (rightly kept), or it is
    // gone, e.g. deleted by an attempt whose answer was lost before the SDK sent it again.
    if (k && (e.code === 'PreconditionFailed' || e.code === 'NoSuchKey')) {
      if (await stillThere(store, bucket, k)) out.changed.push(e.key);
      else out.gone += 1;
    } else out.errors.push(`${e.key}: ${e.code}${e.message ? ` ${e.message}` : ''}`);
  }
  return out;
}

async function stillThere(store: S3Store, bucket: string, k: PlanKey): Promise<boolean> {
  return (await headThere(store, bucket, k.key, k.versionId)) !== undefined;
}

async function executePlan(
  store: S3Store,
  plan: PlatePlan,
  plate: PlateRow,
  log: Logger,
  recheck: boolean,
): Promise<Omit<PlateResult, 'seconds'>> {
  const errors: string[] = [];
  const skipped = [...plan.skipped];
  let gone = plan.gone;
  let deleted = 0;
  let bytes = 0;
  for (let i = 0; i < plan.keys.length; i += DELETE_BATCH) {
    let batch = plan.keys.slice(i, i + DELETE_BATCH);
    if (recheck) {
      const r = await recheckBatch(store, plan.L.bucket, batch);
      batch = r.unchanged;
      skipped.push(...r.changed);
      gone += r.gone;
    }
    const r = await sendBatch(store, plan.L.bucket, batch);
    deleted += r.deleted;
    bytes += r.bytes;
    skipped.push(...r.changed);
    gone += r.gone;
    errors.push(...r.errors);
  }
  log.info({ deleted, errors: errors.length, skipped: skipped.length, gone }, 'delete done');
  if (errors.length > 0) {
    throw new PlateError(
      `${errors.length} key(s) not deleted (re-run to finish): ${nameSome(errors)}`,
    );
  }
  const notes = [
    skipped.length ? `kept ${skipped.length} changed key(s): ${nameSome(skipped)}` : '',
    gone ? `${gone} already gone` : '',
  ].filter(Boolean);
  return {
    plateId: plate.plateId,
    tag: plan.L.tag,
    status: 'deleted',
    files: deleted,
    bytesIn: bytes,
    bytesOut: 0,
    ...(notes.length ? { message: notes.join('; ') } : {}),
    details: { skipped, gone },
  };
}
