// The Exitval and Signal columns of --log-dir's archive.joblog, as GNU parallel's --joblog has them.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { jobLogStatus } from '../../src/core/pool.js';
import { Interrupted } from '../../src/errors.js';

describe('job log status', () => {
  test('an interrupted plate shows the signal that stopped the run', () => {
    assert.deepEqual(jobLogStatus('interrupted', new Interrupted('SIGINT', 'x')), [0, 2]);
    assert.deepEqual(jobLogStatus('interrupted', new Interrupted('SIGTERM', 'x')), [0, 15]);
    assert.deepEqual(jobLogStatus('interrupted', new Interrupted('SIGPIPE', 'x')), [0, 13]);
  });

  test('stopped without a signal (an output it could not write) is a failure, not a success', () => {
    assert.deepEqual(
      jobLogStatus('interrupted', new Error('cannot write stdout (ENOSPC)')),
      [1, 0],
    );
    assert.deepEqual(jobLogStatus('interrupted', undefined), [1, 0]);
  });

  test('the other outcomes: their exit codes, no signal', () => {
    assert.deepEqual(jobLogStatus('archived', undefined), [0, 0]);
    assert.deepEqual(jobLogStatus('skipped', undefined), [0, 0]);
    assert.deepEqual(jobLogStatus('failed', undefined), [1, 0]);
    assert.deepEqual(jobLogStatus('mismatch', undefined), [1, 0]);
    assert.deepEqual(jobLogStatus('lease lost', undefined), [75, 0]);
    assert.deepEqual(jobLogStatus('held', undefined), [75, 0]);
  });
});
