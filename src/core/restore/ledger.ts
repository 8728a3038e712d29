/**
 * restore-request's ledger (--ledger FILE): JSON lines, the first naming what the run covers,
 * then one line per RestoreObject answer. Appended one whole line per write, so a kill -9 loses
 * at most the line of the request in flight (which a re-run sends again: S3 answers it 409 or
 * 200, both harmless). A re-run skips keys whose last line is anything but an error.
 */
import { closeSync, existsSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs';
import { UsageError } from '../../errors.js';
import type { Tier } from './state.js';

export type LedgerStatus = 'requested' | 'in-progress' | 'restored' | 'not-archived' | 'error';

export interface LedgerLine {
  key: string;
  status: LedgerStatus;
  tier: Tier;
  time: string;
  message?: string;
}

interface LedgerHeader {
  ledger: 'imgbackup restore-request';
  scope: string;
}

export interface Ledger {
  /** The last line written for the key, from this run or an earlier one. */
  last(key: string): LedgerLine | undefined;
  record(line: Omit<LedgerLine, 'time'>): void;
  close(): void;
}

/** Parses a ledger's text; a torn last line (the write a kill cut short) is left out. */
export function parseLedger(
  text: string,
  file: string,
): { header?: LedgerHeader; lines: LedgerLine[] } {
  // The last piece is '' after a final line end, or else the torn line: either way not a line.
  const complete = text.split('\n').slice(0, -1);
  const parsed = complete.map((l, i) => {
    try {
      return JSON.parse(l) as unknown;
    } catch {
      throw new UsageError(
        `--ledger ${file}: line ${i + 1} is not JSON; it is not a ledger imgbackup wrote (use a new file)`,
      );
    }
  });
  if (parsed.length === 0) return { lines: [] };
  const header = parsed[0] as LedgerHeader;
  if (header?.ledger !== 'imgbackup restore-request' || typeof header.scope !== 'string') {
    throw new UsageError(
      `--ledger ${file}: its first line is not an imgbackup restore-request ledger header (use a new file)`,
    );
  }
  return { header, lines: parsed.slice(1) as LedgerLine[] };
}

/**
 * Opens (or starts) the ledger for a run covering `scope`. A ledger written for another scope
 * (other plates, another prefix or filter) is refused: its "done" keys are not this run's.
 */
export function openLedger(file: string, scope: string): Ledger {
  const last = new Map<string, LedgerLine>();
  const bytes = existsSync(file) ? readFileSync(file) : Buffer.alloc(0);
  const { header, lines } = parseLedger(bytes.toString('utf8'), file);
  if (header && header.scope !== scope) {
    throw new UsageError(
      `--ledger ${file} was written for ${header.scope}, not for this run's ${scope}; use a new ledger file`,
    );
  }
  for (const l of lines) last.set(l.key, l);
  // A torn last line is cut off, so the next line is not glued to it.
  const whole = bytes.lastIndexOf(0x0a) + 1;
  if (whole < bytes.length) truncateSync(file, whole);
  const fd = openSync(file, 'a');
  if (!header) writeSync(fd, JSON.stringify({ ledger: 'imgbackup restore-request', scope }) + '\n');
  return {
    last: (key) => last.get(key),
    record(l) {
      const line: LedgerLine = { ...l, time: new Date().toISOString() };
      last.set(line.key, line);
      writeSync(fd, JSON.stringify(line) + '\n');
    },
    close: () => closeSync(fd),
  };
}

/** Whether a re-run leaves the key alone: its restore was requested, or it needs none. */
export function ledgerSkips(line: LedgerLine | undefined): boolean {
  return line !== undefined && line.status !== 'error';
}
