// The gzip engines: each block becomes one complete gzip member that zlib and `gzip -dc` decode
// to the input, at every level; libdeflate is what this build compresses with by default.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { GZIP_ENGINES, gzipEngine, zlibOptions } from '../../src/archive/gzip-engine.js';
import { imageLike } from '../helpers/fixtures.js';

const csvLike = (n: number) =>
  Buffer.from(
    Array.from({ length: Math.ceil(n / 24) }, (_, i) => `${i},${(i * 7919) % 1000},0.5\n`).join(''),
  ).subarray(0, n);

const inputs: [string, Buffer][] = [
  ['empty', Buffer.alloc(0)],
  ['1 byte', Buffer.from('x')],
  ['1 MiB of random bytes', randomBytes(1024 * 1024)],
  ['1 MiB image-like', imageLike(1024 * 1024, 7)],
  ['1 MiB CSV-like', csvLike(1024 * 1024)],
];

test('libdeflate is the default engine of this build (npm install built its addon)', () => {
  assert.equal(gzipEngine().name, 'libdeflate');
});

for (const name of GZIP_ENGINES) {
  describe(`gzip engine ${name}`, () => {
    const engine = gzipEngine(name);
    for (const [what, input] of inputs) {
      test(`${what}: one member that zlib and gzip -dc decode, at levels 1, 6 and 9`, async () => {
        for (const level of [1, 6, 9]) {
          const out = await engine.gzip(input, level);
          assert.deepEqual(gunzipSync(out), input, `level ${level}`);
          assert.deepEqual(execFileSync('gzip', ['-dc'], { input: out }), input, `level ${level}`);
        }
      });
    }
  });
}

test('libdeflate refuses what is not a buffer and levels it does not have', () => {
  const engine = gzipEngine('libdeflate');
  assert.throws(() => engine.gzip('text' as unknown as Buffer, 1), TypeError);
  assert.throws(() => engine.gzip(Buffer.from('x'), 13), RangeError);
});

test('libdeflate compresses about as well as zlib at the same level (within 2 %)', async () => {
  const engine = gzipEngine('libdeflate');
  const input = Buffer.concat([imageLike(2 * 1024 * 1024, 3), csvLike(512 * 1024)]);
  for (const level of [1, 6]) {
    const ours = (await engine.gzip(input, level)).length;
    const zlib = gzipSync(input, zlibOptions(level)).length;
    assert.ok(ours <= zlib * 1.02, `level ${level}: ${ours} B vs zlib ${zlib} B`);
    assert.ok(ours < input.length * 0.9, `level ${level} compresses: ${ours} of ${input.length}`);
  }
});
