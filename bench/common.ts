// Constants and small helpers shared by the bench's modules.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ListObjectsV2Command, S3Client, type _Object } from '@aws-sdk/client-s3';
import { MB } from './data.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(REPO, 'bin', 'imgbackup.js');
export const PROJECT = '2099_Bench_IMGBACKUP';
export const BATCH = 'BENCH01';
export const LIVE = 'bench-live';
export const CREDS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

export const fmt = (n: number | undefined, digits = 1) =>
  n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits);
export const mb = (n: number | undefined) => (n === undefined ? undefined : n / MB);

/**
 * Aligned columns: the first left, the rest right. A row of two cells (a name and a note such
 * as "skipped: ..." or "FAILED: ...") is printed as they are, outside the columns.
 */
export function layoutTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) =>
    Math.max(h.length, ...rows.filter((r) => r.length > 2).map((r) => (r[i] ?? '').length)),
  );
  const line = (cells: string[]) =>
    cells.length === 2 && head.length > 2
      ? `${cells[0]!.padEnd(widths[0]!)}  ${cells[1]!}`
      : cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

/** A target of an issue that a run checks (ok) or only reports (no ok). */
export interface Target {
  target: string;
  measured: string;
  ok?: boolean;
}

export function printTargets(title: string, targets: Target[]): void {
  if (targets.length === 0) return;
  console.log(`\n${title}:`);
  for (const t of targets) {
    const mark = t.ok === undefined ? '    ' : t.ok ? 'ok  ' : 'MISS';
    console.log(`  ${mark} ${t.target}: ${t.measured}`);
  }
}

export function s3client(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: CREDS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export async function listAll(s3: S3Client, bucket: string, prefix = ''): Promise<_Object[]> {
  const out: _Object[] = [];
  let token: string | undefined;
  do {
    const r = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    out.push(...(r.Contents ?? []));
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out;
}

export async function pool<T>(
  items: T[],
  n: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}
