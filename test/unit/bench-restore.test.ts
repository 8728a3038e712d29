// The bench's restore part (bench/restore.ts): the listing check that keeps a wrong restore from
// scoring, the restore ratios and issue 13's targets, with exact expected values.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  addRestoreRatios,
  cpuPerGB,
  IMGBACKUP_RESTORE,
  listingProblems,
  OLD_RESTORE,
  restoreTargets,
  type RestoreRow,
} from '../../bench/restore.js';

const A = 'projects/P/B/images/p 1/Images/a.tiff';
const B = 'projects/P/workspace/backend/B/p/p.sqlite';

describe('bench restore: listingProblems', () => {
  test('a destination holding exactly the sources has no problem', () => {
    const sources = [
      { key: A, size: 3 },
      { key: B, size: 0 },
    ];
    assert.deepEqual(listingProblems(sources, [...sources].reverse()), []);
  });

  test('names each missing key, wrong size and key no source had, in that order', () => {
    const problems = listingProblems(
      [
        { key: A, size: 3 },
        { key: B, size: 4096 },
        { key: 'projects/P/B/illum/p/x.npy', size: 7 },
      ],
      [
        { key: 'projects/P/B/illum/', size: 0 },
        { key: B, size: 4095 },
        { key: 'projects/P/B/illum/p/x.npy', size: 7 },
      ],
    );
    assert.deepEqual(problems, [
      `missing ${A}`,
      `size 4095 instead of 4096: ${B}`,
      'not a source: projects/P/B/illum/',
    ]);
  });

  test('an empty destination misses every source', () => {
    assert.deepEqual(listingProblems([{ key: A, size: 1 }], []), [`missing ${A}`]);
  });
});

describe('bench restore: ratios and targets', () => {
  const rows = (): RestoreRow[] => [
    {
      name: IMGBACKUP_RESTORE,
      wallSeconds: 3,
      peakTmpdirBytes: 0,
      peakRssBytes: 250e6,
      cpuSeconds: 4,
    },
    {
      name: OLD_RESTORE,
      wallSeconds: 12,
      peakTmpdirBytes: 9e8,
      peakRssBytes: 100e6,
      cpuSeconds: 16,
    },
  ];

  test('ratios are each row over the old restore', () => {
    const r = rows();
    addRestoreRatios(r);
    assert.deepEqual(r[0]!.ratiosToOldRestore, { wall: 0.25, rss: 2.5, cpu: 0.25 });
    assert.deepEqual(r[1]!.ratiosToOldRestore, { wall: 1, rss: 1, cpu: 1 });
  });

  test('no ratios when the old restore failed', () => {
    const r = rows();
    r[1]!.failed = 'exit 1';
    addRestoreRatios(r);
    assert.equal(r[0]!.ratiosToOldRestore, undefined);
  });

  test('at --max-procs 4 every target is checked', () => {
    assert.deepEqual(restoreTargets(rows(), 4), [
      {
        target: 'imgbackup restore --to-s3 wall <= 0.3x old restore',
        measured: '0.250x',
        ok: true,
      },
      { target: 'imgbackup restore --to-s3 peak tmpdir = 0', measured: '0 bytes', ok: true },
      {
        target:
          'imgbackup restore peak RSS (<= 400 MB is the target at --max-procs 4; this run: 4)',
        measured: '250 MB',
        ok: true,
      },
    ]);
  });

  test('misses are marked; RSS is only reported at another --max-procs', () => {
    const r = rows();
    r[0]!.wallSeconds = 4;
    r[0]!.peakTmpdirBytes = 1;
    const t = restoreTargets(r, 2);
    assert.deepEqual(
      t.map((x) => [x.measured, x.ok]),
      [
        ['0.333x', false],
        ['1 bytes', false],
        ['250 MB', undefined],
      ],
    );
  });

  test('a failed imgbackup restore has no targets; a failed old one drops only the ratio', () => {
    const r = rows();
    r[1]!.failed = 'exit 1';
    assert.deepEqual(
      restoreTargets(r, 4).map((x) => x.target),
      [
        'imgbackup restore --to-s3 peak tmpdir = 0',
        'imgbackup restore peak RSS (<= 400 MB is the target at --max-procs 4; this run: 4)',
      ],
    );
    r[0]!.failed = 'bytes differ';
    assert.deepEqual(restoreTargets(r, 4), []);
  });

  test('CPU per GB is per 10^9 source bytes', () => {
    assert.equal(cpuPerGB(6, 2e9), 3);
    assert.equal(cpuPerGB(1.5, 5e8), 3);
  });
});
