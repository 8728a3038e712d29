import type { PlateResult } from '../core/pool.js';
import type { PlateRow } from '../plates/plates-csv.js';
import { formatBytes, resultJson } from './render.js';

/** Live output while plates run: --json lines on stdout, or one human line per plate on stderr. */
export interface Reporter {
  onStart(plate: PlateRow): void;
  onDone(result: PlateResult): void;
  progress(plateId: string, bytes: number): void;
  /** A line for the user: stderr by default; with --json it stays off stdout. */
  note(text: string, to?: 'stdout' | 'stderr'): void;
  close(): void;
}

export interface ReporterOptions {
  json?: boolean;
  quiet?: boolean;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream;
}

export function createReporter(opts: ReporterOptions): Reporter {
  const out = opts.out ?? process.stdout;
  const err = opts.err ?? process.stderr;
  return {
    onStart(plate) {
      if (!opts.quiet && !opts.json) err.write(`${plate.plateId}: started\n`);
    },
    onDone(r) {
      if (opts.json) out.write(`${resultJson(r)}\n`);
      else if (!opts.quiet || r.status === 'failed' || r.status === 'mismatch') {
        const size = r.bytesIn ? ` (${r.files} files, ${formatBytes(r.bytesIn)})` : '';
        err.write(`${r.plateId}: ${r.status}${size}${r.message ? `: ${r.message}` : ''}\n`);
      }
    },
    progress() {},
    note(text, to = 'stderr') {
      if (opts.json) err.write(`${text}\n`);
      else if (to === 'stdout') out.write(`${text}\n`);
      else if (!opts.quiet) err.write(`${text}\n`);
    },
    close() {},
  };
}
