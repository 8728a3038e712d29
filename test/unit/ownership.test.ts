// Which listing paths are a plate's own (SPEC.md: the tag is not unique), and whose a stranger's
// path names. Every expected value is written out here.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ownerOfPath, ownsPath } from '../../src/core/archive-state.js';
import { plateLayout, type LayoutOptions } from '../../src/layout/layout.js';

const opts = (batchId: string): LayoutOptions => ({
  projectName: 'P',
  batchId,
  bucket: 'live',
  coldBucket: 'cold',
});

describe('ownsPath', () => {
  const plate = plateLayout(opts('X'), { plateId: '1_2', plateIdFull: '1_2' });
  const spaced = plateLayout(opts('B'), { plateId: 'BR1', plateIdFull: 'BR1 Measurement 2' });
  const cases: [string, ReturnType<typeof plateLayout>, string, boolean][] = [
    ['images', plate, 'P/X/images/1_2/a.tif', true],
    ['illum', plate, 'P/X/illum/1_2/i.npy', true],
    ['analysis', plate, 'P/workspace/analysis/X/1_2/A01/Cells.csv', true],
    ['backend', plate, 'P/workspace/backend/X/1_2/1_2.sqlite', true],
    ['same tag, batch X_1 plate 2', plate, 'P/X_1/images/2/a.tif', false],
    ['same tag, analysis of batch X_1', plate, 'P/workspace/analysis/X_1/2/Cells.csv', false],
    ['another project', plate, 'Q/X/images/1_2/a.tif', false],
    ['old script sweep of a longer plate id', plate, 'P/X/images/1_23/a.tif', true],
    ['old script cut path of a plate_id_full with a space', spaced, 'P/B/images/BR1', true],
    ['whole path of another Measurement', spaced, 'P/B/images/BR1 Measurement 1/a.tif', false],
    ['whole path of this Measurement', spaced, 'P/B/images/BR1 Measurement 2/a.tif', true],
    ['illum of the spaced plate', spaced, 'P/B/illum/BR1/i.npy', true],
  ];
  for (const [name, L, path, owned] of cases) {
    test(`${name}: ${path} → ${owned}`, () => assert.equal(ownsPath(L, path), owned));
  }
});

describe('ownerOfPath', () => {
  test('names project, batch and plate from any of the four source forms', () => {
    assert.equal(ownerOfPath('P/X_1/images/2/a.tif'), 'project "P" batch "X_1" plate "2"');
    assert.equal(ownerOfPath('P/X_1/illum/2/i.npy'), 'project "P" batch "X_1" plate "2"');
    assert.equal(
      ownerOfPath('P/workspace/analysis/X_1/2/A01/Cells.csv'),
      'project "P" batch "X_1" plate "2"',
    );
    assert.equal(
      ownerOfPath('P/workspace/backend/X_1/2/2.sqlite'),
      'project "P" batch "X_1" plate "2"',
    );
    assert.equal(ownerOfPath('P/elsewhere.txt'), 'another plate');
  });
});
