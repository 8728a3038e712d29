// The gzip engines: each block becomes one complete gzip member that zlib and `gzip -dc` decode
// to the input, at every level. By default isa-l compresses at levels 1-3 and libdeflate at 4-9
// where the addon was built with both; where it was not, the fallback is asserted instead.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  ENGINE_LEVELS,
  GZIP_ENGINES,
  gzipEngine,
  slowerDefault,
  zlibOptions,
} from '../../src/archive/gzip-engine.js';
import { BUILT, NOT_BUILT } from '../helpers/built.js';
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

/** The engine the user gets at `level` without --gzip-engine, from what was built. */
const expectedDefault = (level: number) =>
  BUILT.isal && level <= 3 ? 'isal' : BUILT.libdeflate ? 'libdeflate' : 'zlib';

test('the default engine is the fastest one built: isa-l at levels 1-3, libdeflate at 4-9, else zlib', () => {
  for (let level = 1; level <= 9; level++) {
    assert.equal(gzipEngine(undefined, level).name, expectedDefault(level), `level ${level}`);
    const slower = slowerDefault(level);
    if (expectedDefault(level) === 'zlib') {
      assert.match(
        slower ?? '',
        /^compressing with zlib \(.+\), as the native gzip addon is not built \(.+\); apt-get install libdeflate-dev libisal-dev, then npm rebuild$/,
      );
    } else if (expectedDefault(level) === 'libdeflate' && level <= 3) {
      assert.match(
        slower ?? '',
        /^compressing with libdeflate \(~2\.5x the CPU of isa-l at level \d\), as isa-l is not built \(.+\); apt-get install libisal-dev, then npm rebuild$/,
      );
    } else {
      assert.equal(slower, undefined, `level ${level}: nothing faster is missing`);
    }
  }
});

test('an engine asked for a level it does not take is refused, naming the levels it takes', () => {
  assert.throws(() => gzipEngine('isal', 4), /the isal gzip engine takes levels 1-3, not 4/);
  assert.throws(() => gzipEngine('libdeflate', 10), /takes levels 1-9, not 10/);
  if (BUILT.libdeflate) assert.equal(gzipEngine('libdeflate', 1).name, 'libdeflate');
  else assert.throws(() => gzipEngine('libdeflate', 1), NOT_BUILT.libdeflate);
  assert.equal(gzipEngine('zlib', 2).name, 'zlib');
});

for (const name of GZIP_ENGINES) {
  const { min, max } = ENGINE_LEVELS[name];
  const levels = [...new Set([min, Math.min(6, max), max])];
  const built = name === 'zlib' || BUILT[name];
  describe(`gzip engine ${name}${built ? '' : ' (not built here)'}`, () => {
    if (!built) {
      test('naming it is refused, saying what to install', () => {
        assert.throws(() => gzipEngine(name), NOT_BUILT[name as 'isal' | 'libdeflate']);
      });
      return;
    }
    const engine = gzipEngine(name);
    for (const [what, input] of inputs) {
      test(`${what}: one member that zlib and gzip -dc decode, at levels ${levels.join(', ')}`, async () => {
        for (const level of levels) {
          const out = await engine.gzip(input, level);
          assert.deepEqual(gunzipSync(out), input, `level ${level}`);
          assert.deepEqual(execFileSync('gzip', ['-dc'], { input: out }), input, `level ${level}`);
          // tarballSizeBound allows 1 %: even incompressible input must stay well below it
          const limit = input.length * 1.005 + 64;
          assert.ok(out.length <= limit, `level ${level}: ${out.length} B > ${limit} B`);
        }
      });
    }
  });
}

test('the native engines that were built refuse what is not a buffer and levels they do not have', () => {
  if (!BUILT.libdeflate) {
    assert.throws(() => gzipEngine('libdeflate'), NOT_BUILT.libdeflate);
    assert.throws(() => gzipEngine('isal'), NOT_BUILT.isal);
    return;
  }
  const libdeflate = gzipEngine('libdeflate');
  assert.throws(() => libdeflate.gzip('text' as unknown as Buffer, 1), TypeError);
  assert.throws(() => libdeflate.gzip(Buffer.from('x'), 13), RangeError);
  if (!BUILT.isal) {
    assert.throws(() => gzipEngine('isal'), NOT_BUILT.isal);
    return;
  }
  const isal = gzipEngine('isal');
  assert.throws(() => isal.gzip('text' as unknown as Buffer, 1), TypeError);
  // isa-l's level 0 is another, much weaker, algorithm; 4 does not exist
  assert.throws(() => isal.gzip(Buffer.from('x'), 0), RangeError);
  assert.throws(() => isal.gzip(Buffer.from('x'), 4), RangeError);
});

test('libdeflate compresses about as well as zlib at the same level (within 2 %)', async () => {
  if (!BUILT.libdeflate) return assert.throws(() => gzipEngine('libdeflate'), NOT_BUILT.libdeflate);
  const engine = gzipEngine('libdeflate');
  const input = Buffer.concat([imageLike(2 * 1024 * 1024, 3), csvLike(512 * 1024)]);
  for (const level of [1, 6]) {
    const ours = (await engine.gzip(input, level)).length;
    const zlib = gzipSync(input, zlibOptions(level)).length;
    assert.ok(ours <= zlib * 1.02, `level ${level}: ${ours} B vs zlib ${zlib} B`);
    assert.ok(ours < input.length * 0.9, `level ${level} compresses: ${ours} of ${input.length}`);
  }
});

test('isa-l compresses nearly as well as zlib level 1 (within 5 %), better at level 3', async () => {
  if (!BUILT.isal) return assert.throws(() => gzipEngine('isal'), NOT_BUILT.isal);
  const engine = gzipEngine('isal');
  const input = Buffer.concat([imageLike(2 * 1024 * 1024, 3), csvLike(512 * 1024)]);
  const zlib1 = gzipSync(input, zlibOptions(1)).length;
  const sizes = [];
  for (const level of [1, 2, 3]) {
    const ours = (await engine.gzip(input, level)).length;
    assert.ok(ours <= zlib1 * 1.05, `level ${level}: ${ours} B vs zlib level 1 ${zlib1} B`);
    assert.ok(ours < input.length * 0.9, `level ${level} compresses: ${ours} of ${input.length}`);
    sizes.push(ours);
  }
  assert.ok(sizes[2]! < sizes[0]!, `level 3 (${sizes[2]} B) < level 1 (${sizes[0]} B)`);
});

/**
 * Run in a fresh process with one pool thread, so its heap is known: first (if `dirty`) two
 * libdeflate blocks whose round-trip buffer leaves a freed chunk of ISA-L's stream size
 * (82,384 B in ISA-L 2.30) holding 0x0007 in every 16-bit word, then one isa-l block whose
 * input repeats every 4 KiB. Prints the isa-l member's length and md5.
 */
const DIRTY_HEAP_CHILD = `
const { native } = await import(process.argv[1]);
const addon = native.addon;
const x = Buffer.alloc(82384);
for (let i = 0; i < x.length; i += 2) x.writeUInt16LE(7, i);
if (process.argv[2] === 'dirty') {
  await addon.gzipMember(x, 1);
  await addon.gzipMember(Buffer.alloc(4 << 20, 1), 1);
}
let seed = 1;
const period = Buffer.alloc(4096).map(() => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
const out = await addon.isalGzipMember(Buffer.concat(Array(256).fill(period)), 1);
const { createHash } = await import('node:crypto');
console.log(out.length, createHash('md5').update(out).digest('hex'));
`;

test('isa-l output does not depend on what the pool thread had in its heap before (the stream is zeroed)', () => {
  if (!BUILT.isal) return assert.throws(() => gzipEngine('isal'), NOT_BUILT.isal);
  const addonModule = new URL('../../src/native/addon.js', import.meta.url).href;
  const run = (mode: string) =>
    execFileSync(
      process.execPath,
      ['--input-type=module', '-e', DIRTY_HEAP_CHILD, addonModule, mode],
      { env: { ...process.env, UV_THREADPOOL_SIZE: '1' }, encoding: 'utf8' },
    ).trim();
  const clean = run('clean');
  // A 4 KiB period is found only by a window of at least 4 KiB: a 1 MiB block of it compresses
  // to well under half (a 128-byte window, as garbage in hist_bits once gave, stores it).
  assert.ok(Number(clean.split(' ')[0]) < 512 * 1024, clean);
  assert.equal(run('dirty'), clean);
});
