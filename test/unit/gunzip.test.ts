// Reading a tarball back: a stream of gzip members (as archive writes them) gunzips to the exact
// tar bytes, in output steps of GUNZIP_CHUNK_BYTES rather than zlib's 16 KiB default.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { GUNZIP_CHUNK_BYTES, tarballGunzip } from '../../src/archive/gunzip.js';

test('consecutive gzip members gunzip to the whole input, in chunks of up to 256 KiB', async () => {
  const parts = [randomBytes(700_000), Buffer.alloc(1_500_000, 7), randomBytes(3)];
  const gz = Buffer.concat(parts.map((p) => gzipSync(p, { level: 1 })));
  const sizes: number[] = [];
  const out: Buffer[] = [];
  for await (const c of Readable.from([gz]).pipe(tarballGunzip()) as AsyncIterable<Buffer>) {
    sizes.push(c.length);
    out.push(c);
  }
  assert.deepEqual(Buffer.concat(out), Buffer.concat(parts));
  assert.equal(GUNZIP_CHUNK_BYTES, 256 * 1024);
  assert.equal(Math.max(...sizes), GUNZIP_CHUNK_BYTES);
});
