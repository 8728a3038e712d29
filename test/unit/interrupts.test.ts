// What stops a run early (signals, a lost stdout or stderr): the lines the user reads, the
// reason the run's AbortSignal carries, and when a second signal ends the process at once.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createInterrupts, lostOutputLine } from '../../src/cli/interrupts.js';
import { Interrupted } from '../../src/errors.js';

function harness() {
  const lines: string[] = [];
  const exits: number[] = [];
  const run = createInterrupts({ say: (l) => lines.push(l), exitNow: (c) => exits.push(c) });
  return { run, lines, exits };
}

const STOPPING = 'no new plates; aborting work in flight and cleaning up';

describe('interrupts', () => {
  test('a first SIGINT aborts the run and says so; a second exits 130 at once', () => {
    const { run, lines, exits } = harness();
    run.enter('running');
    run.onSignal('SIGINT');
    assert.equal(run.signal.aborted, true);
    assert.ok(run.signal.reason instanceof Interrupted);
    assert.equal(run.stoppedBy(), 'SIGINT');
    assert.deepEqual(exits, []);
    run.onSignal('SIGINT');
    assert.deepEqual(lines, [
      `imgbackup: SIGINT: ${STOPPING}`,
      'imgbackup: SIGINT again, exiting now',
    ]);
    assert.deepEqual(exits, [130]);
  });

  test('SIGTERM then SIGTERM: 143', () => {
    const { run, exits } = harness();
    run.onSignal('SIGTERM');
    assert.equal(run.stoppedBy(), 'SIGTERM');
    run.onSignal('SIGTERM');
    assert.deepEqual(exits, [143]);
  });

  test('after a closed stdout, a first Ctrl-C still waits for the cleanup', () => {
    const { run, lines, exits } = harness();
    run.enter('running');
    run.onOutputLost({ stream: 'stdout', code: 'EPIPE' });
    assert.equal(run.stoppedBy(), 'SIGPIPE');
    run.onSignal('SIGINT');
    assert.deepEqual(exits, [], 'not "again": the user had not interrupted yet');
    assert.equal(run.stoppedBy(), 'SIGPIPE', 'the run reports what stopped it first');
    run.onSignal('SIGINT');
    assert.deepEqual(exits, [130]);
    assert.deepEqual(lines, [
      `imgbackup: cannot write stdout (EPIPE): ${STOPPING}`,
      `imgbackup: SIGINT: ${STOPPING}`,
      'imgbackup: SIGINT again, exiting now',
    ]);
  });

  test('a full disk under stdout stops the run without a signal', () => {
    const { run, lines } = harness();
    run.enter('running');
    run.onOutputLost({ stream: 'stdout', code: 'ENOSPC' });
    assert.equal(run.signal.aborted, true);
    assert.equal(run.stoppedBy(), undefined);
    assert.equal(errorText(run.signal.reason), 'cannot write stdout (ENOSPC)');
    assert.deepEqual(lines, [`imgbackup: cannot write stdout (ENOSPC): ${STOPPING}`]);
  });

  test('a closed stderr stops the run as SIGPIPE and prints nothing', () => {
    const { run, lines } = harness();
    run.enter('running');
    run.onOutputLost({ stream: 'stderr', code: 'EPIPE' });
    assert.equal(run.stoppedBy(), 'SIGPIPE');
    assert.deepEqual(lines, []);
  });

  test('the line for a lost stdout depends on what was in flight', () => {
    const head = 'imgbackup: cannot write stdout';
    assert.equal(lostOutputLine('stdout', 'EPIPE', 'running'), `${head} (EPIPE): ${STOPPING}`);
    assert.equal(lostOutputLine('stdout', 'ENOSPC', 'running'), `${head} (ENOSPC): ${STOPPING}`);
    // The plates are done: nothing to abort. `| head` left on purpose; a full disk did not.
    assert.equal(lostOutputLine('stdout', 'EPIPE', 'reporting'), undefined);
    assert.equal(
      lostOutputLine('stdout', 'ENOSPC', 'reporting'),
      `${head} (ENOSPC): the summary is incomplete`,
    );
    // `--help > /dev/full`: no plate started.
    assert.equal(lostOutputLine('stdout', 'EPIPE', 'starting'), undefined);
    assert.equal(lostOutputLine('stdout', 'ENOSPC', 'starting'), `${head} (ENOSPC)`);
    assert.equal(lostOutputLine('stderr', 'ENOSPC', 'running'), undefined);
  });
});

function errorText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
