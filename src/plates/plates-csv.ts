import { readFile } from 'node:fs/promises';
import { parse } from 'csv-parse/sync';
import { UsageError } from '../errors.js';
import { type PlateRef, unsafeNameReason } from '../layout/layout.js';

export interface PlateRow extends PlateRef {
  /** 1-based line of the row in the file, for messages. */
  line: number;
}

const HEADER = ['plate_id', 'plate_id_full'] as const;

/**
 * Reads the plates CSV shared by every subcommand. Everything is checked before any plate starts:
 * one bad row refuses the whole file, naming the file, the line and what to fix.
 */
export async function readPlatesCsv(file: string): Promise<PlateRow[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code;
    throw new UsageError(`${file}: cannot read plates CSV (${why})`);
  }
  return parsePlatesCsv(text, file);
}

export function parsePlatesCsv(text: string, file: string): PlateRow[] {
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, {
      bom: true,
      info: true,
      skip_empty_lines: true,
      relax_column_count: false,
    }) as unknown as { record: string[]; info: { lines: number } }[];
  } catch (err) {
    const e = err as Error & { lines?: number };
    // csv-parse reports an unclosed quote where parsing ended; the user needs where it opened.
    const line = unclosedQuoteLine(text) ?? e.lines;
    const where = line !== undefined ? `:${line}` : '';
    throw new UsageError(`${file}${where}: not valid CSV: ${e.message}`);
  }
  const first = records[0];
  if (!first) throw new UsageError(`${file}: empty; expected the header "${HEADER.join(',')}"`);
  const header = first.record.map((h) => h.trim());
  if (header.length !== 2 || header[0] !== HEADER[0] || header[1] !== HEADER[1]) {
    throw new UsageError(
      `${file}:${first.info.lines}: header is "${first.record.join(',')}"; expected "${HEADER.join(',')}"`,
    );
  }
  const rows: PlateRow[] = [];
  const byId = new Map<string, number>();
  const byFull = new Map<string, number>();
  for (const { record, info } of records.slice(1)) {
    const line = info.lines;
    const [plateId = '', plateIdFull = ''] = record;
    for (const [column, value] of [
      ['plate_id', plateId],
      ['plate_id_full', plateIdFull],
    ] as const) {
      const why = unsafeNameReason(value);
      if (why) throw new UsageError(`${file}:${line}: ${column} ${JSON.stringify(value)} ${why}`);
    }
    const seen = byId.get(plateId);
    if (seen !== undefined) {
      throw new UsageError(`${file}:${line}: plate_id "${plateId}" already on line ${seen}`);
    }
    const seenFull = byFull.get(plateIdFull);
    if (seenFull !== undefined) {
      throw new UsageError(
        `${file}:${line}: plate_id_full "${plateIdFull}" already on line ${seenFull}; two plates cannot share one images folder`,
      );
    }
    byId.set(plateId, line);
    byFull.set(plateIdFull, line);
    rows.push({ plateId, plateIdFull, line });
  }
  if (rows.length === 0) throw new UsageError(`${file}: no plates after the header`);
  return rows;
}

/** The line on which a quote that is never closed opened, if there is one. */
function unclosedQuoteLine(text: string): number | undefined {
  let line = 1;
  let inQuote = false;
  let openedAt = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      if (inQuote && text[i + 1] === '"')
        i += 1; // an escaped quote inside a quoted field
      else if ((inQuote = !inQuote)) openedAt = line;
    } else if (c === '\n') line += 1;
  }
  return inQuote ? openedAt : undefined;
}
