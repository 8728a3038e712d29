import { closeSync, mkdirSync, openSync, readlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  verbose?: boolean;
  /** --json: stderr gets pino's JSON lines, for machines; otherwise one human line per call. */
  json?: boolean;
  /** Where a human line goes (the progress display draws around it); default stderr. */
  write?: (line: string) => void;
}

/** Names shown per array field before "and N more" (a plate can add thousands of keys). */
const ITEMS_SHOWN = 3;

/** pino's own fields (it adds no pid or hostname: base is unset), and those shown in their own place. */
const NOT_FIELDS = new Set(['level', 'time', 'msg', 'plate', 'err']);

function fieldText(name: string, value: unknown): string | undefined {
  if (Array.isArray(value)) {
    if (value.length === 0) return undefined;
    const shown = value.slice(0, ITEMS_SHOWN).map((v) => JSON.stringify(v));
    const more = value.length > ITEMS_SHOWN ? ` and ${value.length - ITEMS_SHOWN} more` : '';
    return `${name} (${value.length}): ${shown.join(', ')}${more}`;
  }
  if (value === undefined || value === null) return undefined;
  return `${name}: ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`;
}

/**
 * One log record as a line for a person: `<plate>: <msg>: <field>: <value>; ...` (`imgbackup:`
 * without a plate), `error:` before the message at level error and above, an err's message last.
 */
export function humanLine(rec: Record<string, unknown>): string {
  const who = typeof rec.plate === 'string' ? rec.plate : 'imgbackup';
  const tag = typeof rec.level === 'number' && rec.level >= 50 ? 'error: ' : '';
  const parts = Object.entries(rec)
    .filter(([k]) => !NOT_FIELDS.has(k))
    .map(([k, v]) => fieldText(k, v))
    .filter((p): p is string => p !== undefined);
  const err = rec.err as { message?: unknown } | undefined;
  if (err) parts.push(typeof err.message === 'string' ? err.message : JSON.stringify(err));
  return `${who}: ${tag}${String(rec.msg ?? '')}${parts.length ? `: ${parts.join('; ')}` : ''}`;
}

/** A pino destination that turns each JSON record into humanLine's line. */
export function humanStream(write: (line: string) => void): DestinationStream {
  return {
    write(chunk: string) {
      for (const text of chunk.split('\n')) {
        if (text === '') continue;
        let rec: Record<string, unknown>;
        try {
          rec = JSON.parse(text) as Record<string, unknown>;
        } catch {
          write(text); // not a record: shown as it is rather than lost
          continue;
        }
        write(humanLine(rec));
      }
    },
  };
}

const toStderr = (line: string) => writeSync(2, `${line}\n`);

/** Logs go to stderr (stdout is for results); warnings only unless --verbose. */
export function createLogger(opts: LogOptions = {}): Logger {
  const dest = opts.json
    ? pino.destination({ dest: 2, sync: true })
    : humanStream(opts.write ?? toStderr);
  return pino({ level: opts.verbose ? 'debug' : 'warn', base: undefined }, dest);
}

/** The stream `base` writes to (a child shares its parent's). */
function streamOf(base: Logger): DestinationStream {
  return (base as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym]!;
}

/**
 * A logger for a plate's worker thread (core/workers): its records go to `send` as pino's JSON
 * lines, and the main thread writes them where its own log writes (writeForwarded), so they are
 * drawn above the progress display, or stay JSON with --json, as the main thread's own.
 */
export function forwardingLogger(level: string, send: (line: string) => void): Logger {
  return pino({ level, base: undefined }, { write: (line: string) => send(line) });
}

/** A line of a worker's forwardingLogger, written where `base` writes. */
export function writeForwarded(base: Logger, line: string): void {
  streamOf(base).write(line);
}

/**
 * The OS id of the calling thread (/proc/thread-self -> <pid>/task/<tid>; Linux only): which
 * event loop ran a plate, as /proc and top name it.
 */
function osThreadId(): number | undefined {
  try {
    return Number(readlinkSync('/proc/thread-self').split('/').pop());
  } catch {
    return undefined;
  }
}

/** A plate's log and, when it has a file, what closes that file. */
export interface PlateLog {
  log: Logger;
  /** Closes the plate's file now (its lines are already written); later lines are dropped. */
  close: () => void;
}

/**
 * A plate's own log: everything at info and above as JSON in `<logDir>/<plate>.log`, each record
 * naming the thread that ran the plate (tid), and what the run's log shows, where it shows it (a
 * human line on stderr, or JSON with --json).
 */
export function plateLogger(base: Logger, plateId: string, logDir?: string): Logger {
  return openPlateLog(base, plateId, logDir).log;
}

/**
 * `fn` with the plate's log, whose file is closed when `fn` settles: a run of many plates on
 * one thread would otherwise keep one fd per plate open until the process ends.
 */
export async function withPlateLog<T>(
  base: Logger,
  plateId: string,
  logDir: string | undefined,
  fn: (log: Logger) => Promise<T>,
): Promise<T> {
  const { log, close } = openPlateLog(base, plateId, logDir);
  try {
    return await fn(log);
  } finally {
    close();
  }
}

/**
 * plateLogger, with its file closed by the caller: a worker thread runs plate after plate
 * (core/workers), and fds are the process's, not the thread's, so each plate's must be closed.
 */
export function openPlateLog(base: Logger, plateId: string, logDir?: string): PlateLog {
  if (!logDir) return { log: base.child({ plate: plateId }), close: () => {} };
  mkdirSync(logDir, { recursive: true });
  // Our own fd, closed synchronously by close(): sonic-boom's end() fsyncs and closes later.
  const fd = openSync(join(logDir, `${plateId}.log`), 'a');
  const file = new ClosableFile(pino.destination({ dest: fd, sync: true }), fd, osThreadId());
  const log = pino(
    { level: 'debug', base: { plate: plateId } },
    pino.multistream([
      { level: 'info', stream: file },
      { level: base.level as pino.Level, stream: streamOf(base) },
    ]),
  );
  return { log, close: () => file.close() };
}

/**
 * A plate's file, with the calling thread's id first in each record (pino's lines start with
 * "{"). After close() lines are dropped rather than written to an fd that may be another's by
 * then (a late line of a plate that failed with work still settling).
 */
class ClosableFile implements DestinationStream {
  private closed = false;

  constructor(
    private readonly file: DestinationStream,
    private readonly fd: number,
    private readonly tid: number | undefined,
  ) {}

  write(line: string): void {
    if (this.closed) return;
    this.file.write(this.tid === undefined ? line : `{"tid":${this.tid},${line.slice(1)}`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd); // sync destination: every line is already in the file
  }
}
