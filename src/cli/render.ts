import type { PlateResult } from '../core/pool.js';

export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u += 1;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** The end-of-run table: one row per plate, then a count per status. */
export function summaryTable(results: PlateResult[]): string {
  const header = ['plate', 'status', 'files', 'bytes in', 'bytes out', 'seconds', 'message'];
  const rows = results.map((r) => [
    r.plateId,
    r.status,
    String(r.files),
    formatBytes(r.bytesIn),
    formatBytes(r.bytesOut),
    r.seconds.toFixed(1),
    r.message ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i >= 2 && i <= 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const counts = new Map<string, number>();
  for (const r of results) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const total = [...counts].map(([s, n]) => `${n} ${s}`).join(', ');
  return [line(header), ...rows.map(line), '', `${results.length} plate(s): ${total}`, ''].join(
    '\n',
  );
}

export function resultJson(r: PlateResult): string {
  return JSON.stringify({ type: 'plate', ...r });
}

export function summaryJson(
  command: string,
  results: PlateResult[],
  exitCode: number,
  extra: Record<string, unknown> = {},
): string {
  const counts: Record<string, number> = {};
  for (const r of results) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return JSON.stringify({
    type: 'summary',
    command,
    plates: results.length,
    counts,
    files: results.reduce((n, r) => n + r.files, 0),
    bytesIn: results.reduce((n, r) => n + r.bytesIn, 0),
    bytesOut: results.reduce((n, r) => n + r.bytesOut, 0),
    ...extra,
    exitCode,
  });
}
