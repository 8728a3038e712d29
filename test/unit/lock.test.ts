// Lock holders: what a lock file says, and when its holder counts as alive (Linux /proc).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import pino from 'pino';
import {
  holderAlive,
  lockPlate,
  ourHolder,
  parseLock,
  procStat,
  removeStale,
  type PlateLock,
} from '../../src/core/resume.js';
import { plateLayout } from '../../src/layout/layout.js';
import { mountTmpfs, unmountTmpfs } from '../helpers/tmpfs.js';

describe('lock holders', () => {
  test('parseLock reads the JSON form and the bare pid of older versions', () => {
    assert.deepEqual(parseLock('{"pid":42,"start":"123456","host":"h1"}'), {
      pid: 42,
      start: '123456',
      host: 'h1',
    });
    assert.deepEqual(parseLock('4242'), { pid: 4242 });
    for (const bad of ['', 'abc', '0', '-1', '{"pid":"42"}', '{}', 'null', '[42]'])
      assert.equal(parseLock(bad), undefined, JSON.stringify(bad));
  });

  test('this process is alive under its own start time, not under another one', () => {
    const me = ourHolder();
    assert.equal(me.pid, process.pid);
    assert.equal(me.host, hostname());
    assert.match(me.start ?? '', /^\d+$/);
    assert.equal(holderAlive(me), true);
    assert.equal(holderAlive({ ...me, start: String(Number(me.start) + 1) }), false);
    assert.equal(holderAlive({ pid: process.pid }), true, 'a bare pid: alive if the pid is');
  });

  test('a process that exited is not alive; a holder on another host cannot be checked', () => {
    const gone = spawnSync('true').pid!;
    assert.equal(procStat(gone), undefined);
    assert.equal(holderAlive({ pid: gone }), false);
    assert.equal(holderAlive({ pid: gone, host: `not-${hostname()}` }), true);
  });

  test('two takers of one stale lock: exactly one gets it, the other is told who holds it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imgbackup-lock-'));
    try {
      const L = plateLayout(
        { projectName: 'P', batchId: 'B', bucket: 'live', coldBucket: 'cold' },
        { plateId: 'p1', plateIdFull: 'p1' },
      );
      const path = join(dir, 'P_B_p1.lock');
      for (let round = 0; round < 20; round++) {
        await writeFile(path, '999999999\n'); // a pid that cannot exist: stale
        // One log per taker, so each removal can be traced to the taker that made it.
        const said: string[][] = [[], []];
        const logs = said.map((lines) =>
          pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) }),
        );
        const got = await Promise.allSettled(logs.map((log) => lockPlate(dir, L, log)));
        const won = got.flatMap((g, i) => (g.status === 'fulfilled' ? [{ lock: g.value, i }] : []));
        const lost = got.filter((g) => g.status === 'rejected');
        assert.equal(won.length, 1, `round ${round}: one holder`);
        assert.match(
          String((lost[0] as PromiseRejectedResult).reason),
          new RegExp(`being archived by process ${process.pid} on `),
        );
        assert.deepEqual(parseLock(await readFile(path, 'utf8')), ourHolder());
        const removed = said.map((lines) =>
          lines.filter((l) => l.includes('removing a stale lock')),
        );
        assert.equal(removed.flat().length, 1, `round ${round}: the stale lock removed once`);
        const { lock, i } = won[0] as { lock: PlateLock; i: number };
        assert.equal(
          lock.tookOver,
          removed[i]!.length === 1,
          'the holder says it removed a stale lock exactly when it did',
        );
        await lock.release();
        assert.deepEqual(await readdir(dir), [], 'no lock or takeover file left');
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a stale lock replaced by another run meanwhile, or under a takeover by another run, is not removed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imgbackup-lock-'));
    try {
      const path = join(dir, 'T.lock');
      const log = pino({ level: 'silent' });
      // Judged stale as '999999999'; another run has since put its own lock there.
      await writeFile(path, `${JSON.stringify(ourHolder())}\n`);
      assert.equal(await removeStale(path, '999999999', log), true, 'look again');
      assert.deepEqual(parseLock(await readFile(path, 'utf8')), ourHolder());
      // Another run is taking it over right now: hands off, try again shortly.
      await writeFile(path, '999999999\n');
      await writeFile(join(dir, 'T.takeover.lock'), '');
      assert.equal(await removeStale(path, '999999999', log), false);
      assert.equal(await readFile(path, 'utf8'), '999999999\n');
      // Still unchanged and no takeover under way: removed.
      await rm(join(dir, 'T.takeover.lock'));
      assert.equal(await removeStale(path, '999999999', log), true);
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a lock that cannot be written (full disk) fails with ENOSPC and leaves no lock file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imgbackup-lock-'));
    mountTmpfs(dir, '64k');
    try {
      const L = plateLayout(
        { projectName: 'P', batchId: 'B', bucket: 'live', coldBucket: 'cold' },
        { plateId: 'p1', plateIdFull: 'p1' },
      );
      const log = pino({ level: 'silent' });
      const fresh = await lockPlate(dir, L, log);
      assert.equal(fresh.tookOver, false);
      await fresh.release();
      await assert.rejects(writeFile(join(dir, 'fill'), Buffer.alloc(1024 * 1024)), {
        code: 'ENOSPC',
      });
      await assert.rejects(lockPlate(dir, L, log), { code: 'ENOSPC' });
      assert.deepEqual(await readdir(dir), ['fill']);
    } finally {
      unmountTmpfs(dir);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
