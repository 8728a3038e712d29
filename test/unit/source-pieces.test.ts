// How archive splits its source objects into GETs, and how many of them the read-ahead keeps in
// flight: the pieces and the order fetches start in are written out here.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readAhead } from '../../src/core/read-ahead.js';
import { piecesOf } from '../../src/core/source-bodies.js';
import type { ObjectInfo } from '../../src/s3/store.js';

const MiB = 1024 * 1024;
const obj = (key: string, size: number): { obj: ObjectInfo } => ({
  obj: { key, size, etag: 'd41d8cd98f00b204e9800998ecf8427e', lastModified: new Date(0) },
});

describe('piecesOf', () => {
  test('objects up to the piece size are one GET each; larger ones are ranges of it', () => {
    const items = [
      obj('empty', 0),
      obj('small', 5),
      obj('exact', 8 * MiB),
      obj('one-more', 8 * MiB + 1),
      obj('large', 20 * MiB),
    ];
    const got = piecesOf(items, 8 * MiB).map((p) => [
      p.item.obj.key,
      p.span.start,
      p.span.end,
      p.size,
      p.of,
    ]);
    assert.deepEqual(got, [
      ['empty', 0, 0, 0, 1],
      ['small', 0, 5, 5, 1],
      ['exact', 0, 8 * MiB, 8 * MiB, 1],
      ['one-more', 0, 8 * MiB, 8 * MiB, 2],
      ['one-more', 8 * MiB, 8 * MiB + 1, 1, 2],
      ['large', 0, 8 * MiB, 8 * MiB, 3],
      ['large', 8 * MiB, 16 * MiB, 8 * MiB, 3],
      ['large', 16 * MiB, 20 * MiB, 4 * MiB, 3],
    ]);
  });
});

describe('readAhead', () => {
  test('keeps GETs in flight within the byte bound, and starts the next as each is taken', async () => {
    const started: number[] = [];
    const items = [8, 8, 8, 8, 8, 8].map((size, i) => ({ i, size }));
    const it = readAhead(
      items,
      (item) => {
        started.push(item.i);
        return Promise.resolve([Buffer.alloc(0)]);
      },
      { maxCount: 16, maxBytes: 32 },
    );
    const first = await it.next();
    assert.equal(first.value?.item.i, 0);
    // Four within 32 bytes at once; taking the first frees room for the fifth.
    assert.deepEqual(started, [0, 1, 2, 3, 4]);
    const rest: number[] = [];
    for await (const { item } of it) rest.push(item.i);
    assert.deepEqual(rest, [1, 2, 3, 4, 5]);
    assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
  });

  test('an item larger than the bound is fetched alone, once nothing else is buffered', async () => {
    const started: number[] = [];
    const items = [4, 40, 4].map((size, i) => ({ i, size }));
    const it = readAhead(
      items,
      (item) => {
        started.push(item.i);
        return Promise.resolve([]);
      },
      { maxCount: 16, maxBytes: 32 },
    );
    await it.next();
    assert.deepEqual(started, [0, 1]);
    await it.next();
    assert.deepEqual(started, [0, 1, 2]);
  });

  test('at most maxCount in flight, however small the items', async () => {
    const started: number[] = [];
    const items = Array.from({ length: 40 }, (_, i) => ({ i, size: 1 }));
    const it = readAhead(
      items,
      (item) => {
        started.push(item.i);
        return Promise.resolve([]);
      },
      { maxCount: 16, maxBytes: 32 * MiB },
    );
    await it.next();
    assert.equal(started.length, 17); // 16 ahead, then one more as the first is taken
  });
});
