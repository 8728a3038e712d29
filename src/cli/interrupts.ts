// Everything that stops a run early, in one place: SIGINT and SIGTERM, and an output the run
// can no longer write (outputs.ts). Each aborts the run's one AbortSignal; the reason says why,
// and the exit code and the job log read it from there (exit-codes.ts, core/pool.ts).
import { Interrupted } from '../errors.js';
import { EXIT } from './exit-codes.js';
import type { OutputLoss } from './outputs.js';

/**
 * Where the command is when an output fails: the message differs. Before and after the plates
 * nothing is in flight to abort; after them only the summary is lost.
 */
export type Phase = 'starting' | 'running' | 'reporting';

export interface InterruptIo {
  /** One line to stderr (without its newline). */
  say(line: string): void;
  /** Ends the process at once: a second signal means the user will not wait for cleanup. */
  exitNow(code: number): void;
}

export interface Interrupts {
  /** The run's signal: every plate and every request listens to it. */
  readonly signal: AbortSignal;
  /** The signal the run stopped for (SIGPIPE for a closed output), read from the reason. */
  stoppedBy(): NodeJS.Signals | undefined;
  enter(phase: Phase): void;
  onSignal(sig: NodeJS.Signals): void;
  onOutputLost(loss: OutputLoss): void;
}

export function createInterrupts(io: InterruptIo): Interrupts {
  const ctl = new AbortController();
  let phase: Phase = 'starting';
  // Only a signal the user sent counts for "again": after a closed stdout, the first Ctrl-C
  // must still wait for the cleanup already under way.
  let signalled = false;
  return {
    signal: ctl.signal,
    stoppedBy: () => {
      const reason: unknown = ctl.signal.reason;
      return reason instanceof Interrupted ? reason.signal : undefined;
    },
    enter: (next) => {
      phase = next;
    },
    onSignal: (sig) => {
      if (signalled) {
        io.say(`imgbackup: ${sig} again, exiting now`);
        io.exitNow(sig === 'SIGTERM' ? EXIT.sigterm : EXIT.sigint);
        return;
      }
      signalled = true;
      io.say(`imgbackup: ${sig}: no new plates; aborting work in flight and cleaning up`);
      // After a lost output the run is already stopping, for the cause it reports (141 or 1).
      ctl.abort(new Interrupted(sig, `interrupted by ${sig}`));
    },
    onOutputLost: ({ stream, code }) => {
      const why = `cannot write ${stream} (${code})`;
      const line = lostOutputLine(stream, code, phase);
      if (line) io.say(line);
      // EPIPE is what a C tool dies of as SIGPIPE (Node ignores the signal itself).
      ctl.abort(code === 'EPIPE' ? new Interrupted('SIGPIPE', why) : new Error(why));
    },
  };
}

/**
 * The stderr line for a lost output, if one is due: none for stderr (it cannot be read), none
 * for a stdout whose reader left once the plates are done (`| head` has what it wanted).
 */
export function lostOutputLine(
  stream: OutputLoss['stream'],
  code: string,
  phase: Phase,
): string | undefined {
  if (stream === 'stderr') return undefined;
  const head = `imgbackup: cannot write stdout (${code})`;
  if (phase === 'running') return `${head}: no new plates; aborting work in flight and cleaning up`;
  if (code === 'EPIPE') return undefined;
  return phase === 'reporting' ? `${head}: the summary is incomplete` : head;
}
