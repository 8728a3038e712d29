import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatDuration, parseDuration } from '../../src/commands/restore-flags.js';
import { DEFAULT_PRICES, estimate } from '../../src/core/restore/prices.js';
import {
  archiveClass,
  describeState,
  restoreState,
  takesDays,
  tierAllowed,
} from '../../src/core/restore/state.js';
import { pollDelays } from '../../src/core/restore/status.js';

describe('restore state', () => {
  test('x-amz-restore: absent, ongoing, done with an expiry', () => {
    assert.deepEqual(restoreState({ storageClass: 'GLACIER' }), { state: 'not requested' });
    assert.deepEqual(
      restoreState({ storageClass: 'DEEP_ARCHIVE', restore: 'ongoing-request="true"' }),
      { state: 'in progress' },
    );
    const s = restoreState({
      storageClass: 'GLACIER',
      restore: 'ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"',
    });
    assert.deepEqual(s, { state: 'ready', expiry: new Date(Date.UTC(2012, 11, 21)) });
    assert.equal(describeState(s), 'ready until 2012-12-21T00:00:00.000Z');
    assert.deepEqual(restoreState({ storageClass: 'STANDARD_IA' }), { state: 'readable' });
    assert.deepEqual(restoreState({}), { state: 'readable' });
    assert.deepEqual(restoreState({ storageClass: 'GLACIER_IR' }), { state: 'readable' });
  });

  test('classes: Intelligent-Tiering archive tiers come from ArchiveStatus and take no Days', () => {
    assert.equal(archiveClass({ storageClass: 'INTELLIGENT_TIERING' }), 'none');
    const it = archiveClass({
      storageClass: 'INTELLIGENT_TIERING',
      archiveStatus: 'DEEP_ARCHIVE_ACCESS',
    });
    assert.equal(it, 'IT_DEEP_ARCHIVE');
    assert.equal(takesDays(it), false);
    assert.equal(takesDays('GLACIER'), true);
    assert.deepEqual(
      restoreState({ storageClass: 'INTELLIGENT_TIERING', archiveStatus: 'ARCHIVE_ACCESS' }),
      {
        state: 'not requested',
      },
    );
  });

  test('Expedited: Glacier Flexible Retrieval yes, Deep Archive no', () => {
    assert.equal(tierAllowed('GLACIER', 'Expedited'), true);
    assert.equal(tierAllowed('DEEP_ARCHIVE', 'Expedited'), false);
    assert.equal(tierAllowed('IT_DEEP_ARCHIVE', 'Expedited'), false);
    assert.equal(tierAllowed('DEEP_ARCHIVE', 'Bulk'), true);
  });

  test('estimate: per GiB plus per 1000 requests, from the table', () => {
    const e = estimate(DEFAULT_PRICES, 'GLACIER', 'Standard', 100 * 1024 ** 3, 2000);
    assert.deepEqual(e, { usd: 100 * 0.01 + 2 * 0.05, wait: '3-5 hours' });
    assert.equal(estimate(DEFAULT_PRICES, 'DEEP_ARCHIVE', 'Expedited', 1, 1), undefined);
  });

  test('poll delays start short and double up to --poll', () => {
    const next = pollDelays(60_000);
    assert.deepEqual([next(), next(), next(), next()], [15_000, 30_000, 60_000, 60_000]);
    const short = pollDelays(1_000);
    assert.deepEqual([short(), short()], [1_000, 1_000]);
  });

  test('durations', () => {
    assert.equal(parseDuration('--timeout')('12h'), 12 * 3_600_000);
    assert.equal(parseDuration('--poll')('5m'), 300_000);
    assert.equal(parseDuration('--poll')('90'), 90_000);
    assert.throws(() => parseDuration('--poll')('5 minutes'), /--poll takes a duration/);
    assert.throws(() => parseDuration('--poll')('0s'), /--poll takes a duration/);
  });

  test('durations as help shows defaults: the largest whole unit, read back the same', () => {
    const cases: [number, string][] = [
      [300_000, '5m'],
      [172_800_000, '2d'],
      [43_200_000, '12h'],
      [90_000, '90s'],
      [3_600_000 + 60_000, '61m'],
      [1_500, '1.5s'],
    ];
    for (const [ms, text] of cases) {
      assert.equal(formatDuration(ms), text);
      assert.equal(parseDuration('--x')(text), ms, text);
    }
  });
});
