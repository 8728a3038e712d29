// The CLI asks libuv for THREADPOOL_SIZE threads (compression slots + file I/O) instead of the
// default 4, which would cap compression at 4 cores; a size the user set is kept.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { THREADPOOL_SIZE } from '../../src/archive/compress-limit.js';
import { BIN } from '../helpers/cli.js';

test('the CLI runs with THREADPOOL_SIZE libuv threads, or the UV_THREADPOOL_SIZE the user set', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'imgbackup-threads-'));
  // A CommonJS preload (an ESM one would start the pool before the CLI's first line) that
  // reports, at exit, the size asked for and how many threads the process had.
  const hook = join(dir, 'hook.cjs');
  await writeFile(
    hook,
    `process.on('exit', () => process.stderr.write('THREADS ' + process.env.UV_THREADPOOL_SIZE + ' ' + require('node:fs').readdirSync('/proc/self/task').length + '\\n'));\n`,
  );
  const run = (env: NodeJS.ProcessEnv) => {
    // A plates CSV that does not exist: the CLI reads it asynchronously (starting the pool) and
    // exits 2 without touching S3.
    const r = spawnSync(
      process.execPath,
      ['--require', hook, BIN, 'archive', '--plates', join(dir, 'none.csv')].concat([
        '--project-name',
        'P',
        '--batch-id',
        'B',
        '--bucket',
        'b',
        '--cold-bucket',
        'c',
      ]),
      { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } },
    );
    assert.equal(r.status, 2, r.stderr);
    const m = /THREADS (\S+) (\d+)/.exec(r.stderr);
    assert.ok(m, r.stderr);
    return { asked: m[1], threads: Number(m[2]) };
  };
  const ours = run({});
  assert.equal(ours.asked, String(THREADPOOL_SIZE));
  const four = run({ UV_THREADPOOL_SIZE: '4' });
  assert.equal(four.asked, '4', 'the size the user set is kept');
  assert.equal(ours.threads - four.threads, THREADPOOL_SIZE - 4, 'the pool really has that size');
});
