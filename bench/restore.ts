// The restore part of `npm run bench` (issue 13): `imgbackup restore --to-s3` against the old
// runbook's restore (aws s3 cp down, md5sum + diff, tar xvzf, aws s3 sync up), both from the
// tarballs the round's `imgbackup` archive run wrote, each into its own empty bucket, and each
// result checked byte for byte against what the bench uploaded. See bench/README.md.
import { join } from 'node:path';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  BATCH,
  CLI,
  fmt,
  layoutTable,
  LIVE,
  listAll,
  mb,
  pool,
  PROJECT,
  REPO,
  type Target,
} from './common.js';
import { MB } from './data.js';

export const IMGBACKUP_RESTORE = 'imgbackup restore';
export const OLD_RESTORE = 'old restore';
/** Objects fetched at once for the byte check: enough to keep s3rver busy, bounded in memory. */
const CHECK_CONCURRENCY = 8;
/** Problems named in a failed check; the rest are counted. */
const PROBLEMS_SHOWN = 5;
const GB = 1e9;

export interface RestoreArgsContext {
  endpoint: string;
  platesCsv: string;
  tmpdir: string;
  logDir: string;
  maxProcs: number;
}

/** imgbackup restore of every plate's tarballs in `cold` into `dest`, at their original keys. */
export const imgbackupRestoreArgs = (cold: string, dest: string) => (c: RestoreArgsContext) => [
  CLI,
  'restore',
  '--plates',
  c.platesCsv,
  '--project-name',
  PROJECT,
  '--batch-id',
  BATCH,
  '--bucket',
  LIVE,
  '--cold-bucket',
  cold,
  '--to-s3',
  '--to-bucket',
  dest,
  '--max-procs',
  String(c.maxProcs),
  '--endpoint-url',
  c.endpoint,
  '--log-dir',
  c.logDir,
];

/** bench/old_restore.sh: the runbook's restore under GNU parallel; --bucket is where it syncs to. */
export const oldRestoreArgs = (cold: string, dest: string) => (c: RestoreArgsContext) => [
  join(REPO, 'bench', 'old_restore.sh'),
  '--plates',
  c.platesCsv,
  '--project_name',
  PROJECT,
  '--batch_id',
  BATCH,
  '--bucket',
  dest,
  '--cold_bucket',
  cold,
  '--tmpdir',
  c.tmpdir,
  '--max_procs',
  String(c.maxProcs),
  '--endpoint_url',
  c.endpoint,
  '--log_dir',
  c.logDir,
];

export interface KeySize {
  key: string;
  size: number;
}

/**
 * What differs between the objects the bench uploaded and a destination's listing: keys
 * missing, keys no source had, sizes that differ. Empty when the listing is exactly the sources.
 */
export function listingProblems(expected: KeySize[], listed: KeySize[]): string[] {
  const got = new Map(listed.map((o) => [o.key, o.size]));
  const want = new Set(expected.map((o) => o.key));
  const problems: string[] = [];
  for (const o of expected) {
    const size = got.get(o.key);
    if (size === undefined) problems.push(`missing ${o.key}`);
    else if (size !== o.size) problems.push(`size ${size} instead of ${o.size}: ${o.key}`);
  }
  for (const o of listed) if (!want.has(o.key)) problems.push(`not a source: ${o.key}`);
  return problems;
}

export interface RestoreCheck {
  ok: boolean;
  /** Objects in the destination and their bytes. */
  objects: number;
  bytes: number;
  problems: number;
  /** The first PROBLEMS_SHOWN problems. */
  shown: string[];
}

/**
 * Lists `bucket` and compares it with the sources (listingProblems); if the listing is right,
 * GETs every object and compares its bytes with what the bench uploaded (`bytesOf`).
 */
export async function checkRestored(
  s3: S3Client,
  bucket: string,
  expected: KeySize[],
  bytesOf: (o: KeySize) => Buffer,
): Promise<RestoreCheck> {
  const listed = (await listAll(s3, bucket)).map((o) => ({ key: o.Key!, size: o.Size ?? 0 }));
  const problems = listingProblems(expected, listed);
  if (problems.length === 0) {
    await pool(expected, CHECK_CONCURRENCY, async (o) => {
      const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.key }));
      const got = Buffer.from(await r.Body!.transformToByteArray());
      if (!got.equals(bytesOf(o))) problems.push(`bytes differ: ${o.key}`);
    });
  }
  return {
    ok: problems.length === 0,
    objects: listed.length,
    bytes: listed.reduce((n, o) => n + o.size, 0),
    problems: problems.length,
    shown: problems.slice(0, PROBLEMS_SHOWN),
  };
}

/** The fields of a bench result that the restore table and targets read. */
export interface RestoreRow {
  name: string;
  skipped?: string;
  failed?: string;
  wallSeconds?: number;
  sourceMBps?: number;
  peakTmpdirBytes?: number;
  peakRssBytes?: number;
  cpuSeconds?: number;
  cpuSecondsPerGB?: number;
  restoredObjects?: number;
  restoredBytes?: number;
  bytesEqual?: boolean;
  serverCpuSeconds?: number;
  otherCpuSeconds?: number;
  ratiosToOldRestore?: Record<string, number>;
}

export const cpuPerGB = (cpuSeconds: number, sourceBytes: number) =>
  cpuSeconds / (sourceBytes / GB);

/** Sets each successful row's ratios to the old runbook's restore (variant / old). */
export function addRestoreRatios(rows: RestoreRow[]): void {
  const old = rows.find((r) => r.name === OLD_RESTORE && !r.failed && !r.skipped);
  if (!old) return;
  const q = (a?: number, b?: number) => (a !== undefined && b ? a / b : NaN);
  for (const r of rows) {
    if (r.skipped || r.failed) continue;
    r.ratiosToOldRestore = {
      wall: q(r.wallSeconds, old.wallSeconds),
      rss: q(r.peakRssBytes, old.peakRssBytes),
      cpu: q(r.cpuSeconds, old.cpuSeconds),
    };
  }
}

export function restoreTable(rows: RestoreRow[]): string {
  const head = [
    'restore',
    'wall s',
    'src MB/s',
    'peak tmpdir MB',
    'peak RSS MB',
    'CPU s',
    'CPU s/GB',
    'objects',
    'bytes equal',
    'wall x',
    'RSS x',
    'CPU x',
    's3rver CPU s',
    'other CPU s',
  ];
  const cells = rows.map((r) => {
    if (r.skipped || r.failed)
      return [r.name, r.skipped ? `skipped: ${r.skipped}` : `FAILED: ${r.failed}`];
    const x = r.ratiosToOldRestore ?? {};
    return [
      r.name,
      fmt(r.wallSeconds),
      fmt(r.sourceMBps),
      fmt(mb(r.peakTmpdirBytes)),
      fmt(mb(r.peakRssBytes)),
      fmt(r.cpuSeconds),
      fmt(r.cpuSecondsPerGB),
      String(r.restoredObjects ?? '-'),
      r.bytesEqual ? 'yes' : 'NO',
      fmt(x.wall, 2),
      fmt(x.rss, 2),
      fmt(x.cpu, 2),
      fmt(r.serverCpuSeconds),
      fmt(r.otherCpuSeconds),
    ];
  });
  return layoutTable(head, cells);
}

/** Issue 13's targets that a run can check: wall vs the old path, tmpdir, RSS at --max-procs 4. */
export function restoreTargets(rows: RestoreRow[], maxProcs: number): Target[] {
  const ok = (n: string) => rows.find((r) => r.name === n && !r.failed && !r.skipped);
  const ours = ok(IMGBACKUP_RESTORE);
  const old = ok(OLD_RESTORE);
  if (!ours) return [];
  const targets: Target[] = [];
  if (old) {
    const q = ours.wallSeconds! / old.wallSeconds!;
    targets.push({
      target: `${IMGBACKUP_RESTORE} --to-s3 wall <= 0.3x ${OLD_RESTORE}`,
      measured: `${q.toFixed(3)}x`,
      ok: q <= 0.3,
    });
  }
  targets.push({
    target: `${IMGBACKUP_RESTORE} --to-s3 peak tmpdir = 0`,
    measured: `${ours.peakTmpdirBytes} bytes`,
    ok: ours.peakTmpdirBytes === 0,
  });
  const rss = ours.peakRssBytes! / MB;
  targets.push({
    target: `${IMGBACKUP_RESTORE} peak RSS (<= 400 MB is the target at --max-procs 4; this run: ${maxProcs})`,
    measured: `${rss.toFixed(0)} MB`,
    ...(maxProcs === 4 ? { ok: rss <= 400 } : {}),
  });
  return targets;
}
