import { mkdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  verbose?: boolean;
}

/** Structured logs go to stderr (stdout is for results); warnings only unless --verbose. */
export function createLogger(opts: LogOptions = {}): Logger {
  return pino(
    { level: opts.verbose ? 'debug' : 'warn', base: undefined },
    pino.destination({ dest: 2, sync: true }),
  );
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

/** A plate's own log: everything at info and above in `<logDir>/<plate>.log`, plus the run's log. */
export function plateLogger(base: Logger, plateId: string, logDir?: string): Logger {
  if (!logDir) return base.child({ plate: plateId });
  mkdirSync(logDir, { recursive: true });
  const file = pino.destination({ dest: join(logDir, `${plateId}.log`), sync: true, append: true });
  return pino(
    { level: 'debug', base: { plate: plateId, tid: osThreadId() } },
    pino.multistream([
      { level: 'info', stream: file },
      { level: base.level as pino.Level, stream: pino.destination({ dest: 2, sync: true }) },
    ]),
  );
}
