import type { PlateResult } from '../core/pool.js';
import type { PlateRow } from '../plates/plates-csv.js';
import { formatBytes, resultJson } from './render.js';

/** Live output while plates run: --json lines on stdout, or one human line per plate on stderr. */
export interface Reporter {
  onStart(plate: PlateRow): void;
  onDone(result: PlateResult): void;
  /** A plate's sources are listed: it will write totalBytes of source bytes. */
  onPlan(plateId: string, totalBytes: number): void;
  progress(plateId: string, bytes: number): void;
  /** How many plates the run has, for the overall progress line. */
  setTotal(plates: number): void;
  /** A line for the user: stderr by default; with --json it stays off stdout. */
  note(text: string, to?: 'stdout' | 'stderr'): void;
  /** A log line (warnings, errors): on stderr above the live display, even with --quiet. */
  logLine(text: string): void;
  /** A line printed after the summary table; with --json its data joins the summary object. */
  footer(text: string, data?: Record<string, unknown>): void;
  readonly footers: { text: string; data?: Record<string, unknown> }[];
  /** Ends the progress display (a last redraw, cursor on a fresh line); call before the summary. */
  close(): void;
}

export interface ReporterOptions {
  json?: boolean;
  quiet?: boolean;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Live display (redrawn in place) instead of plain lines; default: whether err is a TTY. */
  tty?: boolean;
  /** Redraw period of the live display, ms. */
  redrawMs?: number;
  /** Period of the plain progress lines, ms. */
  plainMs?: number;
  now?: () => number;
}

interface Running {
  total: number;
  done: number;
  started: number;
}

function duration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--:--';
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** One plate's progress: bytes done / total, percent, MB/s, ETA. */
export function progressLine(plateId: string, r: Running, now: number): string {
  const secs = Math.max((now - r.started) / 1000, 0.001);
  const rate = r.done / secs;
  const pct = r.total > 0 ? Math.floor((100 * r.done) / r.total) : 100;
  const eta = rate > 0 ? (r.total - r.done) / rate : Infinity;
  return (
    `${plateId}: ${formatBytes(r.done)} / ${formatBytes(r.total)} ${pct}% ` +
    `${(rate / 1e6).toFixed(1)} MB/s ETA ${duration(eta)}`
  );
}

export function createReporter(opts: ReporterOptions): Reporter {
  const out = opts.out ?? process.stdout;
  const err = opts.err ?? process.stderr;
  const now = opts.now ?? Date.now;
  const live = opts.tty ?? err.isTTY === true;
  const showProgress = !opts.quiet;
  const footers: Reporter['footers'] = [];
  const running = new Map<string, Running>();
  let total = 0;
  let finished = 0;
  let drawn = 0; // lines of the live display now on screen
  let dirty = false;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const displayLines = (): string[] => {
    const t = now();
    const width = Math.max((err.columns || 80) - 1, 20);
    const lines = [...running].map(([id, r]) => `  ${progressLine(id, r, t)}`);
    lines.push(`plates: ${finished}/${total || '?'} done, ${running.size} running`);
    return lines.map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l));
  };
  const clear = () => {
    if (drawn > 0) err.write(`\x1b[${drawn}A\r\x1b[J`);
    drawn = 0;
  };
  const draw = () => {
    const lines = displayLines();
    clear();
    err.write(`${lines.join('\n')}\n`);
    drawn = lines.length;
    dirty = false;
  };
  /** Writes a line to stderr above the live display. */
  const line = (text: string) => {
    if (live && drawn > 0) {
      clear();
      err.write(`${text}\n`);
      draw();
    } else err.write(`${text}\n`);
  };
  const startTimer = () => {
    if (timer || closed || !showProgress) return;
    if (live) {
      timer = setInterval(() => {
        if (dirty) draw();
      }, opts.redrawMs ?? 200);
    } else {
      timer = setInterval(() => {
        const t = now();
        for (const [id, r] of running) err.write(`${progressLine(id, r, t)}\n`);
      }, opts.plainMs ?? 10_000);
    }
    timer.unref();
  };

  return {
    footers,
    footer(text, data) {
      footers.push({ text, ...(data ? { data } : {}) });
    },
    setTotal(n) {
      total = n;
    },
    onStart(plate) {
      if (!opts.quiet && !opts.json) line(`${plate.plateId}: started`);
    },
    onPlan(plateId, totalBytes) {
      running.set(plateId, { total: totalBytes, done: 0, started: now() });
      dirty = true;
      startTimer();
      if (live && showProgress) draw(); // at once; then at most every redrawMs
    },
    onDone(r) {
      finished += 1;
      running.delete(r.plateId);
      dirty = true;
      if (opts.json) out.write(`${resultJson(r)}\n`);
      if (
        !opts.json &&
        (!opts.quiet || ['failed', 'mismatch', 'lease lost', 'held'].includes(r.status))
      ) {
        const bytes = r.filesBytes ?? r.bytesIn;
        const size = bytes ? ` (${r.files} files, ${formatBytes(bytes)})` : '';
        line(`${r.plateId}: ${r.status}${size}${r.message ? `: ${r.message}` : ''}`);
      } else if (live && drawn > 0) draw();
    },
    progress(plateId, bytes) {
      const r = running.get(plateId);
      if (!r) return;
      r.done += bytes;
      dirty = true;
    },
    note(text, to = 'stderr') {
      if (opts.json) line(text);
      else if (to === 'stdout') out.write(`${text}\n`);
      else if (!opts.quiet) line(text);
    },
    logLine(text) {
      line(text);
    },
    close() {
      if (closed) return;
      closed = true;
      if (timer) clearInterval(timer);
      // the last state of the display stays on screen, the cursor on a fresh line below it
      if (live && showProgress && (drawn > 0 || total > 0) && timer) draw();
      timer = undefined;
    },
  };
}
