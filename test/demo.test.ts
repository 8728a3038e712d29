// `npm run demo`: its sample data is image-like (gzips to about two thirds, as real plates do),
// and the demo runs through in well under a minute without the SDK's Node-version notice.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { demoObjects } from '../scripts/demo-data.js';

const DEMO = fileURLToPath(new URL('../scripts/demo.js', import.meta.url));

test('the demo data gzips (zlib level 1) to between 0.5 and 0.85 of its size, images alone too', () => {
  const objs = demoObjects('P', 'B', [
    { plateId: 'p1', plateIdFull: 'p1 full' },
    { plateId: 'p2', plateIdFull: 'p2' },
  ]);
  const ratio = (of: [string, Buffer][]) =>
    of.reduce((n, [, b]) => n + gzipSync(b, { level: 1 }).length, 0) /
    of.reduce((n, [, b]) => n + b.length, 0);
  const all = ratio(objs);
  const images = ratio(objs.filter(([k]) => k.includes('/images/')));
  assert.ok(all >= 0.5 && all <= 0.85, `all: ${all}`);
  assert.ok(images >= 0.5 && images <= 0.85, `images: ${images}`);
  for (const p of ['p1 full', 'p2'])
    assert.ok(
      objs.some(([k]) => k.startsWith(`projects/P/B/images/${p}/`)),
      p,
    );
});

test('the demo runs in under a minute, to its end, without the SDK notice', async () => {
  const t0 = Date.now();
  const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(process.execPath, ['--openssl-legacy-provider', DEMO], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => resolve({ code, out, err }));
  });
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(r.code, 0, r.err + r.out);
  assert.match(r.out, /Demo finished: both plates archived, verified and ready to delete\./);
  assert.doesNotMatch(r.err + r.out, /NodeVersionSupportWarning|Warning:/);
  assert.ok(seconds < 60, `${seconds} s`);
  // the archive table: each plate's tarballs come to about two thirds of its bytes
  for (const m of r.out.matchAll(/^\S+\s+archived\s+\d+\s+([\d.]+) MB\s+([\d.]+) MB/gm)) {
    const ratio = Number(m[2]) / Number(m[1]);
    assert.ok(ratio >= 0.5 && ratio <= 0.85, `${m[0]}: ${ratio}`);
  }
  assert.equal([...r.out.matchAll(/^\S+\s+archived\s/gm)].length, 2, r.out);
});
