// The S3 ETag rule of SPEC.md (".md5 and .etag"): the part size the aws CLI picks, and the
// multipart ETag, checked against md5s computed here over explicit slices.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  BASE_PART_SIZE,
  defaultMd5Impl,
  EtagHasher,
  etagOf,
  isPlainMd5,
  MAX_PARTS,
  partSizeFor,
  StreamMd5,
  unquoteEtag,
  type Md5Impl,
} from '../../src/integrity/etag.js';
import { BUILT } from '../helpers/built.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const md5hex = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
const md5raw = (b: Buffer) => createHash('md5').update(b).digest();

/** The S3 rule, written independently: slices of `partSize`, md5 of the concatenated md5s. */
function expectedEtag(data: Buffer, partSize: number): { etag: string; parts: Buffer[] } {
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += partSize) {
    parts.push(md5raw(data.subarray(off, Math.min(off + partSize, data.length))));
  }
  if (parts.length <= 1) return { etag: md5hex(data), parts: [md5raw(data)] };
  return { etag: `${md5hex(Buffer.concat(parts))}-${parts.length}`, parts };
}

/** Deterministic bytes (xorshift), so a failure is reproducible. */
function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

describe('constants', () => {
  test('the aws CLI defaults', () => {
    assert.equal(BASE_PART_SIZE, 8388608);
    assert.equal(MAX_PARTS, 10000);
  });
});

describe('partSizeFor', () => {
  test('8 MiB up to 10,000 parts of 8 MiB', () => {
    assert.equal(partSizeFor(0), 8388608);
    assert.equal(partSizeFor(1), 8388608);
    assert.equal(partSizeFor(8388608), 8388608);
    assert.equal(partSizeFor(8388609), 8388608);
    assert.equal(partSizeFor(300e9 / 10), 8388608); // 30 GB: 3577 parts
    assert.equal(partSizeFor(83886080000), 8388608); // 10,000 × 8 MiB exactly
  });

  test('one byte more than 10,000 × 8 MiB doubles to 16 MiB', () => {
    assert.equal(partSizeFor(83886080001), 16777216);
    assert.equal(partSizeFor(80000 * MiB + 1), 16777216);
  });

  test('each further doubling at its exact boundary', () => {
    assert.equal(partSizeFor(167772160000), 16777216); // 10,000 × 16 MiB
    assert.equal(partSizeFor(167772160001), 33554432);
    assert.equal(partSizeFor(300e9), 33554432); // a whole plate, ~300 GB
    assert.equal(partSizeFor(335544320000), 33554432); // 10,000 × 32 MiB
    assert.equal(partSizeFor(335544320001), 67108864);
    assert.equal(partSizeFor(1e12), 134217728); // 1 TB: 7451 parts of 128 MiB
    assert.equal(partSizeFor(5 * 1024 * GiB), 1073741824); // 5 TiB, S3's largest: 5120 parts of 1 GiB
  });

  test('the part count never exceeds 10,000 and the part is the smallest power-of-two × 8 MiB', () => {
    for (const size of [1, 123456789, 83886080000, 83886080001, 999999999999, 4398046511104]) {
      const part = partSizeFor(size);
      assert.ok(Math.ceil(size / part) <= 10000, `${size}`);
      assert.equal(part % 8388608, 0);
      const k = part / 8388608;
      assert.equal(k & (k - 1), 0, `${part} is not 8 MiB × 2^n`);
      if (part > 8388608) assert.ok(Math.ceil(size / (part / 2)) > 10000, `${size}`);
    }
  });

  test('a size needing parts over 5 GiB is refused', () => {
    assert.equal(partSizeFor(10000 * 4 * GiB), 4 * GiB);
    assert.throws(() => partSizeFor(10000 * 4 * GiB + 1), /larger than S3 can store/);
  });
});

describe('etagOf and EtagHasher', () => {
  test('0 bytes: plain md5 of nothing, one part', () => {
    const r = etagOf(Buffer.alloc(0));
    assert.equal(r.md5, 'd41d8cd98f00b204e9800998ecf8427e');
    assert.equal(r.etag, 'd41d8cd98f00b204e9800998ecf8427e');
    assert.equal(r.size, 0);
    assert.deepEqual(
      r.partMd5s.map((b) => b.toString('hex')),
      ['d41d8cd98f00b204e9800998ecf8427e'],
    );
    const h = new EtagHasher(5);
    assert.equal(h.digest().etag, 'd41d8cd98f00b204e9800998ecf8427e');
  });

  test('"abc": the RFC 1321 md5', () => {
    const r = etagOf(Buffer.from('abc'));
    assert.equal(r.etag, '900150983cd24fb0d6963f7d28e17f72');
    assert.equal(r.md5, '900150983cd24fb0d6963f7d28e17f72');
  });

  test('"abc" in parts of 2: md5(md5("ab") md5("c"))-2', () => {
    const r = etagOf(Buffer.from('abc'), 2);
    const ab = createHash('md5').update('ab').digest();
    const c = createHash('md5').update('c').digest();
    assert.equal(ab.toString('hex'), '187ef4436122d1cc2f40dc2b92f0eba0');
    assert.equal(c.toString('hex'), '4a8a08f09d37b73795649038408b5f33');
    assert.equal(r.etag, `${md5hex(Buffer.concat([ab, c]))}-2`);
    assert.equal(r.md5, '900150983cd24fb0d6963f7d28e17f72');
    assert.deepEqual(r.partMd5s, [ab, c]);
    assert.equal(r.size, 3);
  });

  test('exactly 8 MiB is one part: plain md5', () => {
    const data = bytes(8 * MiB, 7);
    const r = etagOf(data);
    assert.equal(r.etag, md5hex(data));
    assert.equal(r.md5, md5hex(data));
    assert.match(r.etag, /^[0-9a-f]{32}$/);
    assert.equal(r.partMd5s.length, 1);
    assert.equal(r.size, 8388608);
  });

  test('8 MiB + 1 is two parts of 8 MiB and 1 byte: -2', () => {
    const data = bytes(8 * MiB + 1, 9);
    const r = etagOf(data);
    const p1 = md5raw(data.subarray(0, 8388608));
    const p2 = md5raw(data.subarray(8388608));
    assert.equal(data.subarray(8388608).length, 1);
    assert.equal(r.etag, `${md5hex(Buffer.concat([p1, p2]))}-2`);
    assert.equal(r.md5, md5hex(data));
    assert.deepEqual(r.partMd5s, [p1, p2]);
    assert.equal(r.size, 8388609);
  });

  test('part boundaries with a small part size', () => {
    const data = bytes(100, 3);
    const cases: [number, number, string][] = [
      [0, 1, ''], // 0 bytes: plain
      [1, 1, ''],
      [5, 1, ''], // exactly one part: plain
      [6, 2, '-2'],
      [10, 2, '-2'], // exactly two parts
      [11, 3, '-3'],
      [100, 20, '-20'],
    ];
    for (const [n, parts, suffix] of cases) {
      const slice = data.subarray(0, n);
      const r = etagOf(slice, 5);
      const want = expectedEtag(slice, 5);
      assert.equal(r.etag, want.etag, `${n} bytes`);
      assert.equal(r.partMd5s.length, parts, `${n} bytes`);
      assert.ok(r.etag.endsWith(suffix) && (suffix !== '' || isPlainMd5(r.etag)), r.etag);
      assert.deepEqual(r.partMd5s, want.parts, `${n} bytes`);
      assert.equal(r.md5, md5hex(slice));
      assert.equal(r.size, n);
    }
  });

  test('the doubling boundary, scaled down: 10,000 parts, then 10,001 or half as many of twice the size', () => {
    const P = 16;
    const full = bytes(10000 * P + 1, 11);
    const atLimit = full.subarray(0, 10000 * P);
    const r1 = etagOf(atLimit, P);
    assert.equal(r1.etag, expectedEtag(atLimit, P).etag);
    assert.match(r1.etag, /^[0-9a-f]{32}-10000$/);
    // the hasher itself does not cap the part count: that is partSizeFor's job
    const r2 = etagOf(full, P);
    assert.equal(r2.etag, expectedEtag(full, P).etag);
    assert.match(r2.etag, /-10001$/);
    // the doubled part size gives 5,001 parts, the last one byte
    const r3 = etagOf(full, 2 * P);
    assert.equal(r3.etag, expectedEtag(full, 2 * P).etag);
    assert.match(r3.etag, /-5001$/);
    assert.deepEqual(r3.partMd5s.at(-1), md5raw(full.subarray(10000 * P)));
  });

  test('the default part size is partSizeFor(size)', () => {
    // 8 MiB + 1 at the default is -2; at an explicit 4 MiB part it would be -3
    const data = bytes(8 * MiB + 1, 13);
    assert.match(etagOf(data).etag, /-2$/);
    assert.equal(etagOf(data, 4 * MiB).etag, expectedEtag(data, 4 * MiB).etag);
    assert.match(etagOf(data, 4 * MiB).etag, /-3$/);
  });

  test('chunks not aligned to parts give the one-shot result', () => {
    const data = randomBytes(5000);
    for (const partSize of [1, 7, 64, 1000, 4999, 5000, 5001]) {
      const h = new EtagHasher(partSize);
      const sizes = [1, 3, 0, 13, 6, 7, 8, 127, 1, 1, 500, 2047];
      let off = 0;
      for (let i = 0; off < data.length; i++) {
        const n = sizes[i % sizes.length]!;
        h.update(data.subarray(off, Math.min(off + n, data.length)));
        off += n;
      }
      const streamed = h.digest();
      const want = expectedEtag(data, partSize);
      assert.equal(streamed.etag, want.etag, `part ${partSize}`);
      assert.deepEqual(streamed.partMd5s, want.parts, `part ${partSize}`);
      assert.deepEqual(streamed, etagOf(data, partSize), `part ${partSize}`);
      assert.equal(streamed.size, 5000);
    }
  });

  test('one chunk spanning many parts', () => {
    const data = randomBytes(1000);
    const h = new EtagHasher(3);
    h.update(data.subarray(0, 1));
    h.update(data.subarray(1));
    assert.equal(h.digest().etag, expectedEtag(data, 3).etag);
  });
});

/** The addon's paired md5 where it was built; Node's crypto (the fallback) where it was not. */
const PAIRED: Md5Impl = BUILT.libdeflate ? 'native' : 'node';

describe(`the paired md5 (${PAIRED}: whole and part in one pass)`, () => {
  test('the addon hashes every real part size where it is built, and Node the others', () => {
    assert.equal(defaultMd5Impl(8 * MiB), PAIRED);
    assert.equal(defaultMd5Impl(partSizeFor(300e9)), PAIRED);
    assert.equal(defaultMd5Impl(64), PAIRED);
    assert.equal(defaultMd5Impl(5), 'node');
    assert.equal(defaultMd5Impl(100), 'node');
    if (BUILT.libdeflate) assert.throws(() => new EtagHasher(100, 'native'), RangeError);
    else assert.throws(() => new EtagHasher(64, 'native'), /the native md5 is not built \(.+\)/);
  });

  test('matches the S3 rule computed here, at every length around block and part ends', () => {
    const data = bytes(3 * 4096 + 200, 21);
    for (const partSize of [64, 128, 4096]) {
      const lengths = new Set([0, 1, 55, 56, 63, 64, 65, 127, 128, 129]);
      for (const k of [1, 2, 3])
        for (const d of [-65, -64, -1, 0, 1, 64]) lengths.add(k * partSize + d);
      for (const n of lengths) {
        if (n < 0 || n > data.length) continue;
        const slice = data.subarray(0, n);
        const r = etagOf(slice, partSize, PAIRED);
        const want = expectedEtag(slice, partSize);
        const where = `part ${partSize}, ${n} bytes`;
        assert.equal(r.md5, md5hex(slice), where);
        assert.deepEqual(r.partMd5s, want.parts, where);
        assert.equal(r.etag, want.etag, where);
        assert.equal(r.size, n, where);
      }
    }
  });

  test("gives the same result as Node's crypto whatever the chunking (8 MiB parts)", () => {
    const data = randomBytes(2 * 8 * MiB + 12345);
    const sizes = [1, 63, 64, 65, 0, 4096, 1 << 20, 3 * MiB + 7, 8 * MiB, 9 * MiB];
    for (let rotate = 0; rotate < sizes.length; rotate += 3) {
      const h = new EtagHasher(8 * MiB, PAIRED);
      const seen: number[] = [];
      let off = 0;
      for (let i = rotate; off < data.length; i++) {
        const n = sizes[i % sizes.length]!;
        h.update(data.subarray(off, Math.min(off + n, data.length)));
        off += n;
        seen.push(h.completedParts.length);
      }
      const native = h.digest();
      assert.deepEqual(native, etagOf(data, 8 * MiB, 'node'), `rotation ${rotate}`);
      assert.match(native.etag, /-3$/);
      // parts are reported as soon as they end, not only at the end
      assert.ok(seen.includes(1) && seen.includes(2), `parts as they end: ${seen.join(',')}`);
    }
  });

  test('a finished state refuses more bytes instead of hashing on', () => {
    const h = new EtagHasher(64, PAIRED);
    h.update(Buffer.from('abc'));
    assert.equal(h.digest().md5, '900150983cd24fb0d6963f7d28e17f72');
    assert.throws(
      () => h.update(Buffer.from('d')),
      PAIRED === 'native' ? TypeError : { code: 'ERR_CRYPTO_HASH_FINALIZED' },
    );
  });
});

describe(`hashing on the thread pool (${PAIRED})`, () => {
  test('updateAsync gives what update gives, whatever the chunking (8 MiB parts)', async () => {
    const data = randomBytes(2 * 8 * MiB + 12345);
    const sizes = [1, 63, 64, 65, 0, 4096, 1 << 20, 3 * MiB + 7, 8 * MiB, 9 * MiB];
    const h = new EtagHasher(8 * MiB, PAIRED);
    const seen: number[] = [];
    let off = 0;
    for (let i = 0; off < data.length; i++) {
      const n = sizes[i % sizes.length]!;
      await h.updateAsync(data.subarray(off, Math.min(off + n, data.length)));
      off += n;
      seen.push(h.completedParts.length);
    }
    const r = h.digest();
    assert.deepEqual(r, etagOf(data, 8 * MiB, 'node'));
    assert.match(r.etag, /-3$/);
    assert.ok(seen.includes(1) && seen.includes(2), `parts as they end: ${seen.join(',')}`);
  });

  test("StreamMd5 is Node's md5 of the bytes, at every length around block and batch ends", async () => {
    const data = randomBytes(3 * MiB + 333);
    const lengths = [0, 1, 55, 56, 63, 64, 65, MiB - 1, MiB, MiB + 1, 2 * MiB + 64, data.length];
    for (const n of lengths) {
      for (const chunk of [1000, 65536, 700_001]) {
        const h = new StreamMd5();
        for (let off = 0; off < n; off += chunk) {
          await h.update(data.subarray(off, Math.min(off + chunk, n)));
        }
        assert.equal(await h.digest(), md5hex(data.subarray(0, n)), `${n} bytes by ${chunk}`);
      }
    }
    assert.equal(await new StreamMd5().digest(), 'd41d8cd98f00b204e9800998ecf8427e');
  });

  test('StreamMd5 keeps the stream order with batches in flight (chunks not awaited in turn)', async () => {
    const chunks = Array.from({ length: 64 }, (_, i) => bytes(64 * 1024 + i, i));
    const h = new StreamMd5();
    await Promise.all(chunks.map((c) => h.update(c)));
    assert.equal(await h.digest(), md5hex(Buffer.concat(chunks)));
  });
});

describe('unquoteEtag', () => {
  test('quotes and the weak prefix are removed', () => {
    assert.equal(
      unquoteEtag('"d41d8cd98f00b204e9800998ecf8427e"'),
      'd41d8cd98f00b204e9800998ecf8427e',
    );
    assert.equal(
      unquoteEtag('"0a9d4f0e2e6b6c1b2f3e4d5c6b7a8f90-17"'),
      '0a9d4f0e2e6b6c1b2f3e4d5c6b7a8f90-17',
    );
    assert.equal(unquoteEtag('W/"abc"'), 'abc');
    assert.equal(unquoteEtag('abc'), 'abc');
    assert.equal(unquoteEtag(undefined), '');
    assert.equal(unquoteEtag(''), '');
  });
});

describe('isPlainMd5', () => {
  test('32 lowercase hex digits only', () => {
    assert.equal(isPlainMd5('d41d8cd98f00b204e9800998ecf8427e'), true);
    assert.equal(isPlainMd5('D41D8CD98F00B204E9800998ECF8427E'), false);
    assert.equal(isPlainMd5('d41d8cd98f00b204e9800998ecf8427e-2'), false);
    assert.equal(isPlainMd5('"d41d8cd98f00b204e9800998ecf8427e"'), false);
    assert.equal(isPlainMd5('d41d8cd98f00b204e9800998ecf8427'), false);
    assert.equal(isPlainMd5('d41d8cd98f00b204e9800998ecf8427e0'), false);
    assert.equal(isPlainMd5('g41d8cd98f00b204e9800998ecf8427e'), false);
    assert.equal(isPlainMd5(''), false);
  });
});
