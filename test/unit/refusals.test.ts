// Every refusal of a plate's listed keys, in one table: the exact message a user sees for each
// reason archive fails a plate before writing anything. Expected strings are written out here.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Source } from '../../src/layout/layout.js';
import { refusal } from '../../src/core/sources.js';

const IMG: Source = { name: 'images', prefix: 'projects/P/B/images/X/' };
const ETAG = 'd41d8cd98f00b204e9800998ecf8427e';

/**
 * [what, keys (relative to the images source unless `full`; etag '' = listed without one), the
 * exact message or undefined (archived)]
 */
const TABLE: [string, { key: string; etag?: string; full?: boolean }[], string | undefined][] = [
  [
    'a key not under its source',
    [{ key: 'projects/P/B/illum/X/f.npy', full: true }],
    'source keys that cannot be archived safely: "projects/P/B/illum/X/f.npy is not under projects/P/B/images/X/"; rename those objects, then re-run',
  ],
  ['an ordinary plate', [{ key: 'a.tif' }, { key: 'sub/' }, { key: 'sub/b.tif' }], undefined],
  ['the source folder marker', [{ key: '' }], undefined],
  ['a name with spaces and unicode', [{ key: 'dir with space/Ünï µm.tif' }], undefined],
  ['dots inside a name', [{ key: 'a..b/c.d.tif' }], undefined],
  ['a sibling that shares a prefix', [{ key: 'a' }, { key: 'ab/c' }, { key: 'a.tif' }], undefined],
  [
    'a ".." segment',
    [{ key: '../escape.tif' }],
    'source keys that cannot be archived safely: "projects/P/B/images/X/../escape.tif has a \\"..\\" path segment"; rename those objects, then re-run',
  ],
  [
    'a "." segment',
    [{ key: 'a/./b.tif' }],
    'source keys that cannot be archived safely: "projects/P/B/images/X/a/./b.tif has a \\".\\" path segment"; rename those objects, then re-run',
  ],
  [
    'an empty segment',
    [{ key: 'a//b.tif' }],
    'source keys that cannot be archived safely: "projects/P/B/images/X/a//b.tif has an empty path segment (//)"; rename those objects, then re-run',
  ],
  [
    'a control character',
    [{ key: 'a\nb.tif' }],
    'source keys that cannot be archived safely: "projects/P/B/images/X/a\\nb.tif contains a control character"; rename those objects, then re-run',
  ],
  [
    'a file and a file below it',
    [{ key: 'a' }, { key: 'a/b.tif' }],
    'source keys that tar cannot both restore (extracting the folder replaces the file, silently): "projects/P/B/images/X/a" and "projects/P/B/images/X/a/b.tif"; rename the file or the folder, then re-run',
  ],
  [
    'a file and its folder marker',
    [{ key: 'a' }, { key: 'a/' }],
    'source keys that tar cannot both restore (extracting the folder replaces the file, silently): "projects/P/B/images/X/a" and "projects/P/B/images/X/a/"; rename the file or the folder, then re-run',
  ],
  [
    'an object listed without an ETag',
    [{ key: 'a.tif' }, { key: 'b.tif', etag: '' }],
    'objects listed without an ETag, so nothing can be proven about them: "projects/P/B/images/X/b.tif"; re-run, and if it persists check the store or any proxy in front of it (S3 lists every object with its ETag)',
  ],
  [
    'every kind at once, each named',
    [{ key: 'a' }, { key: 'a/b', etag: '' }, { key: 'c/../d' }],
    'source keys that cannot be archived safely: "projects/P/B/images/X/c/../d has a \\"..\\" path segment"; rename those objects, then re-run; ' +
      'source keys that tar cannot both restore (extracting the folder replaces the file, silently): "projects/P/B/images/X/a" and "projects/P/B/images/X/a/b"; rename the file or the folder, then re-run; ' +
      'objects listed without an ETag, so nothing can be proven about them: "projects/P/B/images/X/a/b"; re-run, and if it persists check the store or any proxy in front of it (S3 lists every object with its ETag)',
  ],
  [
    'more than five offenders: five named, the count of the rest',
    ['1', '2', '3', '4', '5', '6', '7'].map((n) => ({ key: `${n}//x` })),
    'source keys that cannot be archived safely: ' +
      ['1', '2', '3', '4', '5']
        .map((n) => `"projects/P/B/images/X/${n}//x has an empty path segment (//)"`)
        .join(', ') +
      ' and 2 more; rename those objects, then re-run',
  ],
];

describe('refusal: every reason a plate is refused before anything is written', () => {
  for (const [what, keys, expected] of TABLE) {
    test(what, () => {
      const objects = keys.map((k) => ({
        key: k.full ? k.key : IMG.prefix + k.key,
        etag: k.etag ?? ETAG,
      }));
      assert.equal(refusal([{ source: IMG, objects }]), expected);
    });
  }
});
