// Lock holders: what a lock file says, and when its holder counts as alive (Linux /proc).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, test } from 'node:test';
import { holderAlive, ourHolder, parseLock, procStat } from '../../src/core/resume.js';

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
});
