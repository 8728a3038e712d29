import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ledgerSkips, openLedger, parseLedger } from '../../src/core/restore/ledger.js';
import { UsageError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'imgbackup-ledger-'));
const HEADER = '{"ledger":"imgbackup restore-request","scope":"sources of plates A in s3://b"}\n';

describe('restore-request ledger', () => {
  test('a new ledger: the header, then one whole line per answer, appended', () => {
    const file = join(dir, 'new.jsonl');
    const l = openLedger(file, 'sources of plates A in s3://b');
    l.record({ key: 'k1', status: 'requested', tier: 'Bulk' });
    l.record({ key: 'k2', status: 'error', tier: 'Bulk', message: 'AccessDenied: no' });
    l.close();
    const lines = readFileSync(file, 'utf8').split('\n');
    assert.equal(lines[0] + '\n', HEADER);
    assert.match(
      lines[1]!,
      /^\{"key":"k1","status":"requested","tier":"Bulk","time":"20\d\d-[^"]+Z"\}$/,
    );
    assert.match(
      lines[2]!,
      /^\{"key":"k2","status":"error","tier":"Bulk","message":"AccessDenied: no","time":"[^"]+"\}$/,
    );
    assert.equal(lines[3], '');
  });

  test('a torn last line (kill -9 mid-write) is dropped and cut off; the last line per key wins', () => {
    const file = join(dir, 'torn.jsonl');
    writeFileSync(
      file,
      HEADER +
        '{"key":"k1","status":"error","tier":"Standard","time":"t"}\n' +
        '{"key":"k1","status":"requested","tier":"Standard","time":"t"}\n' +
        '{"key":"k2","status":"req',
    );
    const l = openLedger(file, 'sources of plates A in s3://b');
    assert.equal(l.last('k1')?.status, 'requested');
    assert.equal(l.last('k2'), undefined);
    assert.equal(ledgerSkips(l.last('k1')), true);
    assert.equal(ledgerSkips(l.last('k2')), false);
    l.record({ key: 'k2', status: 'in-progress', tier: 'Standard' });
    l.close();
    const text = readFileSync(file, 'utf8');
    assert.equal(text.split('\n').length, 5);
    assert.equal(parseLedger(text, file).lines.at(-1)?.key, 'k2');
  });

  test('errors are retried; requested, in progress, restored and not archived are skipped', () => {
    assert.equal(ledgerSkips({ key: 'k', status: 'error', tier: 'Bulk', time: 't' }), false);
    for (const status of ['requested', 'in-progress', 'restored', 'not-archived'] as const)
      assert.equal(ledgerSkips({ key: 'k', status, tier: 'Bulk', time: 't' }), true, status);
  });

  test('a ledger of another scope, or a file that is no ledger, is refused and left as it was', () => {
    const file = join(dir, 'other.jsonl');
    writeFileSync(file, HEADER);
    assert.throws(
      () => openLedger(file, 'sources of plates B in s3://b'),
      (e: unknown) =>
        e instanceof UsageError &&
        e.message ===
          `--ledger ${file} was written for sources of plates A in s3://b, not for this run's sources of plates B in s3://b; use a new ledger file`,
    );
    assert.equal(readFileSync(file, 'utf8'), HEADER);
    const junk = join(dir, 'junk.csv');
    writeFileSync(junk, 'key,status\nk1,RESTORED\n');
    assert.throws(
      () => openLedger(junk, 'x'),
      /line 1 is not JSON; it is not a ledger imgbackup wrote/,
    );
  });
});
