// GzipBlocks: the output is concatenated gzip members, one per block, in input order; zlib and
// the system's `gzip -dc` both decode it to the input. Every test runs with each gzip engine.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer as collect } from 'node:stream/consumers';
import { describe, test } from 'node:test';
import { gunzipSync, gzipSync, inflateRawSync } from 'node:zlib';
import { COMPRESS_SLOTS } from '../../src/archive/compress-limit.js';
import { GZIP_BLOCK_SIZE, GzipBlocks } from '../../src/archive/gzip-blocks.js';
import {
  ENGINE_LEVELS,
  GZIP_ENGINES,
  gzipEngine,
  zlibOptions,
  type GzipEngine,
} from '../../src/archive/gzip-engine.js';

import { BUILT } from '../helpers/built.js';

const MiB = 1024 * 1024;

/** Seeded PRNG (mulberry32), so chunkings are reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Compressible but not trivial bytes. */
function textLike(n: number, seed: number): Buffer {
  const r = rng(seed);
  const words = ['plate', 'well', 'site', 'channel', 'DNA', 'ER', 'RNA', 'AGP', 'Mito', '\n'];
  const b = Buffer.alloc(n);
  let off = 0;
  while (off < n) off += b.write(`${words[Math.floor(r() * words.length)]} `, off);
  return b;
}

function chunked(data: Buffer, sizes: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length;) {
    const n = Math.max(1, sizes());
    out.push(data.subarray(off, off + n));
    off += n;
  }
  return out;
}

/** One block compressed on its own: by node's zlib directly, or by the engine under test. */
async function member(engine: GzipEngine, block: Buffer, level: number): Promise<Buffer> {
  return engine.name === 'zlib' ? gzipSync(block, zlibOptions(level)) : engine.gzip(block, level);
}

/**
 * Splits a gzip file into its members by parsing: a 10-byte header (node's zlib writes no
 * optional fields), a raw deflate stream whose length inflate reports, an 8-byte trailer
 * (CRC32, ISIZE), which are checked too.
 */
function members(gz: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < gz.length) {
    assert.equal(gz[off], 0x1f, `magic at ${off}`);
    assert.equal(gz[off + 1], 0x8b, `magic at ${off}`);
    assert.equal(gz[off + 2], 8, 'deflate');
    assert.equal(gz[off + 3], 0, 'no optional header fields');
    const r = inflateRawSync(gz.subarray(off + 10), { info: true }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    const end = off + 10 + r.engine.bytesWritten + 8;
    assert.equal(gz.readUInt32LE(end - 4), r.buffer.length, 'ISIZE');
    // each member on its own is a complete gzip file
    assert.deepEqual(gunzipSync(gz.subarray(off, end)), r.buffer);
    out.push(r.buffer);
    off = end;
  }
  return out;
}

function gzipDc(gz: Buffer): Buffer {
  return execFileSync('gzip', ['-dc'], { input: gz, maxBuffer: 256 * MiB });
}

test('GzipBlocks cuts 1 MiB blocks by default', () => {
  assert.equal(GZIP_BLOCK_SIZE, 1048576);
});

test('tarballs written at once share COMPRESS_SLOTS: never more blocks compressing than that', async () => {
  let running = 0;
  let most = 0;
  const zlib = gzipEngine('zlib');
  const counting: GzipEngine = {
    name: 'zlib',
    gzip: async (block, level) => {
      running += 1;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 2));
      running -= 1;
      return zlib.gzip(block, level);
    },
  };
  const inputs = [0, 1, 2, 3].map((i) => textLike(40 * 1000, i));
  // each stream alone may have 8 blocks in flight; four of them would be 32 without the limit
  const outs = await Promise.all(
    inputs.map((input) =>
      collect(Readable.from(chunked(input, () => 700)).pipe(new GzipBlocks(1, counting, 1000, 8))),
    ),
  );
  outs.forEach((out, i) => assert.deepEqual(gunzipSync(out), inputs[i]));
  assert.equal(most, COMPRESS_SLOTS);
});

// Engines not built here are tested where they are (CI builds all three).
for (const engineName of GZIP_ENGINES.filter((e) => e === 'zlib' || BUILT[e])) {
  describe(`GzipBlocks (${engineName})`, () => {
    const engine = gzipEngine(engineName);
    // A middle and the highest level this engine takes (isa-l: 1-3).
    const { min, max } = ENGINE_LEVELS[engineName];
    const mid = Math.min(6, max);
    const best = max;
    const run = (chunks: Buffer[], level = mid, blockSize?: number, inFlight?: number) =>
      collect(
        Readable.from(chunks, { objectMode: false }).pipe(
          new GzipBlocks(level, engine, blockSize, inFlight),
        ),
      );

    test('1 byte: one member, decoded by zlib and gzip -dc', async () => {
      const input = Buffer.from('x');
      const out = await run([input]);
      assert.deepEqual(out, await member(engine, input, mid));
      assert.deepEqual(gunzipSync(out), input);
      assert.deepEqual(gzipDc(out), input);
      assert.equal(members(out).length, 1);
    });

    test('empty chunks in the stream change nothing', async () => {
      const input = Buffer.from('abcdef');
      const out = await run(
        [Buffer.alloc(0), input.subarray(0, 2), Buffer.alloc(0), input.subarray(2)],
        mid,
        4,
      );
      assert.deepEqual(members(out), [Buffer.from('abcd'), Buffer.from('ef')]);
    });

    test('0 bytes: output is a valid gzip file', async () => {
      const out = await run([]);
      assert.deepEqual(gunzipSync(out), Buffer.alloc(0));
      assert.deepEqual(gzipDc(out), Buffer.alloc(0));
    });

    for (const [what, len] of [
      ['exactly one block', GZIP_BLOCK_SIZE],
      ['one block + 1', GZIP_BLOCK_SIZE + 1],
      ['several blocks, random chunks', 5 * GZIP_BLOCK_SIZE + 12345],
    ] as const) {
      test(`${what} (${len} bytes) with the default block size`, async () => {
        const input = textLike(len, len);
        const r = rng(len);
        const out = await run(
          chunked(input, () => Math.floor(r() * 300000)),
          1,
        );
        assert.deepEqual(gunzipSync(out), input);
        assert.deepEqual(gzipDc(out), input);
        const parts = members(out);
        assert.equal(parts.length, Math.ceil(len / GZIP_BLOCK_SIZE));
        for (let i = 0; i < parts.length; i++) {
          assert.deepEqual(
            parts[i],
            input.subarray(i * GZIP_BLOCK_SIZE, (i + 1) * GZIP_BLOCK_SIZE),
            `member ${i}`,
          );
        }
      });
    }

    test('one chunk much larger than a block', async () => {
      const input = randomBytes(3 * GZIP_BLOCK_SIZE + 5);
      const out = await run([input], 1);
      assert.deepEqual(gunzipSync(out), input);
      assert.equal(members(out).length, 4);
    });

    test('small blocks: ceil(len / blockSize) members, exact bytes, in order', async () => {
      const r = rng(42);
      for (const blockSize of [1, 7, 100, 4096]) {
        const sizes = [1, blockSize - 1, blockSize, blockSize + 1, 10 * blockSize + 3];
        for (const len of [...sizes, Math.min(20000, 500 * blockSize)]) {
          if (len <= 0) continue;
          const input = textLike(len, len * 31 + blockSize);
          for (const inFlight of [1, 2, 8]) {
            const chunks = chunked(input, () => 1 + Math.floor(r() * 3 * blockSize));
            const out = await run(chunks, mid, blockSize, inFlight);
            const where = `block ${blockSize}, ${len} bytes, inFlight ${inFlight}`;
            // independent: gzip each block of the input on its own and concatenate
            const blocks: Buffer[] = [];
            for (let off = 0; off < len; off += blockSize) {
              blocks.push(input.subarray(off, off + blockSize));
            }
            assert.equal(blocks.length, Math.ceil(len / blockSize));
            assert.deepEqual(
              out,
              Buffer.concat(await Promise.all(blocks.map((b) => member(engine, b, mid)))),
              where,
            );
            assert.deepEqual(members(out), blocks, where);
            assert.deepEqual(gunzipSync(out), input, where);
          }
        }
      }
    });

    test('the bytes depend on the input alone: blocks finishing out of order, reused block buffers, other streams holding the slots', async () => {
      // Each block waits a random time before it is compressed, so later blocks often finish
      // first and a block buffer is reused while others are still compressing; four streams
      // at once contend for the process's compression slots.
      const r = rng(7);
      const jittery: GzipEngine = {
        name: engine.name,
        gzip: async (block, level) => {
          await new Promise((res) => setTimeout(res, Math.floor(r() * 4)));
          return member(engine, block, level);
        },
      };
      const blockSize = 4096;
      const inputs = [0, 1, 2, 3].map((i) => textLike(60 * blockSize + 123 * i, 100 + i));
      const outs = await Promise.all(
        inputs.map((input) =>
          collect(
            Readable.from(chunked(input, () => 1 + Math.floor(r() * 3 * blockSize))).pipe(
              new GzipBlocks(mid, jittery, blockSize, 6),
            ),
          ),
        ),
      );
      for (const [i, input] of inputs.entries()) {
        const blocks: Buffer[] = [];
        for (let off = 0; off < input.length; off += blockSize) {
          blocks.push(input.subarray(off, off + blockSize));
        }
        const expected = Buffer.concat(
          await Promise.all(blocks.map((b) => member(engine, b, mid))),
        );
        assert.deepEqual(outs[i], expected, `stream ${i}`);
      }
    });

    test('gzip -dc decodes many small members', async () => {
      const input = textLike(50000, 9);
      const out = await run(
        chunked(input, () => 333),
        best,
        1000,
        3,
      );
      assert.equal(members(out).length, 50);
      assert.deepEqual(gzipDc(out), input);
      // and gzip -t finds the file sound
      execFileSync('gzip', ['-t'], { input: out });
    });

    test('the level is applied', async () => {
      const input = textLike(200000, 5);
      const fast = await run([input], min, 1 << 20);
      const small = await run([input], best, 1 << 20);
      assert.deepEqual(fast, await member(engine, input, min));
      assert.deepEqual(small, await member(engine, input, best));
      assert.ok(
        small.length < fast.length,
        `level ${best} (${small.length} B) < level ${min} (${fast.length} B)`,
      );
      assert.deepEqual(gunzipSync(small), input);
    });
  });
}
