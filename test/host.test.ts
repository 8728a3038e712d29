// The multi-host harness (test/helpers/host.ts) itself: each host has its own hostname, tmpdir
// and environment, is the spawned pid (no shell left between), and takes signals alone or with
// its whole process group.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { probeUts, startHost, stopAllHosts, CLOCK_OFFSET_ENV } from './helpers/host.js';
import { versionText } from '../src/cli/version.js';

/** A node child printing what the test checks, as one JSON line. */
const REPORT =
  'console.log(JSON.stringify({ host: require("os").hostname(), pid: process.pid, ' +
  'tmp: require("os").tmpdir(), offset: process.env.' +
  CLOCK_OFFSET_ENV +
  ' ?? null, mine: process.env.MINE ?? null }))';

const report = (
  hostName: string,
  extra: { clockOffsetMs?: number; env?: NodeJS.ProcessEnv } = {},
) => startHost({ hostname: hostName, args: ['-e', REPORT], command: [process.execPath], ...extra });

interface Report {
  host: string;
  pid: number;
  tmp: string;
  offset: string | null;
  mine: string | null;
}

describe('multi-host harness', () => {
  after(stopAllHosts);

  test('two hosts see their own hostnames and tmpdirs; the test process keeps its own', async () => {
    const before = hostname();
    const a = report('worker-a');
    const b = report('worker-b', { clockOffsetMs: 600_000, env: { MINE: 'b' } });
    const [ra, rb] = await Promise.all([a.exited, b.exited]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(rb.code, 0, rb.stderr);
    const ja = JSON.parse(ra.stdout) as Report;
    const jb = JSON.parse(rb.stdout) as Report;
    assert.deepEqual(
      { ...ja, pid: 0 },
      { host: 'worker-a', pid: 0, tmp: a.tmpdir, offset: null, mine: null },
    );
    assert.deepEqual(
      { ...jb, pid: 0 },
      { host: 'worker-b', pid: 0, tmp: b.tmpdir, offset: '600000', mine: 'b' },
    );
    assert.notEqual(a.tmpdir, b.tmpdir);
    // the spawned pid is the program itself: sh exec'd it, nothing sits between
    assert.equal(ja.pid, a.pid);
    assert.equal(jb.pid, b.pid);
    assert.equal(hostname(), before);
    await a.stop();
    assert.equal(existsSync(a.tmpdir), false);
  });

  test('imgbackup --version runs under it', async () => {
    const h = startHost({ hostname: 'worker-v', args: ['--version'] });
    const r = await h.exited;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${versionText()}\n`);
  });

  test('SIGSTOP freezes it, SIGCONT thaws it, SIGKILL ends it', async () => {
    const h = startHost({
      hostname: 'worker-s',
      command: [process.execPath],
      args: ['-e', 'let n = 0; setInterval(() => console.log(n++), 20)'],
    });
    await h.waitFor(/^3$/m, { on: 'stdout', timeoutMs: 10_000 });
    h.kill('SIGSTOP');
    await sleep(100); // lines already in the pipe arrive
    const frozen = h.stdout();
    await sleep(400);
    assert.equal(h.stdout(), frozen, 'a stopped process went on printing');
    h.kill('SIGCONT');
    const last = Number(frozen.trim().split('\n').at(-1));
    await h.waitFor(new RegExp(`^${last + 3}$`, 'm'), { on: 'stdout', timeoutMs: 10_000 });
    h.kill('SIGKILL');
    const r = await h.exited;
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(r.code, null);
  });

  test('killGroup reaches the children it started; kill only the process', async () => {
    // a shell (the host) with a background sleep (its child); the sleep's pid on stdout
    const h = startHost({
      hostname: 'worker-g',
      command: ['sh', '-c'],
      args: ['sleep 60 </dev/null >/dev/null 2>&1 & echo $!; wait'],
    });
    await h.waitFor(/^\d+\n/, { on: 'stdout', timeoutMs: 10_000 });
    const grandchild = Number(h.stdout().trim());
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    assert.ok(alive(grandchild));
    h.killGroup('SIGKILL');
    const r = await h.exited;
    assert.equal(r.signal, 'SIGKILL');
    for (let i = 0; i < 100 && alive(grandchild); i++) await sleep(20);
    assert.equal(alive(grandchild), false, 'the child survived killGroup');

    const solo = startHost({
      hostname: 'worker-k',
      command: ['sh', '-c'],
      args: ['sleep 60 </dev/null >/dev/null 2>&1 & echo $!; wait'],
    });
    await solo.waitFor(/^\d+\n/, { on: 'stdout', timeoutMs: 10_000 });
    const left = Number(solo.stdout().trim());
    solo.kill('SIGKILL');
    assert.equal((await solo.exited).signal, 'SIGKILL');
    assert.ok(alive(left), 'kill() should reach the process alone');
    await solo.stop();
    for (let i = 0; i < 100 && alive(left); i++) await sleep(20);
    assert.equal(alive(left), false, 'stop() left a child of the group running');
  });

  test('where unshare cannot work, the harness says why instead of running one host', () => {
    assert.equal(probeUts(), true);
    const err = probeUts('/nonexistent/unshare');
    assert.ok(err instanceof Error);
    assert.match(
      err.message,
      /^test\/helpers\/host\.ts: `\/nonexistent\/unshare --uts` cannot give a process its own hostname here \(spawnSync \/nonexistent\/unshare ENOENT\); the multi-host tests need util-linux unshare and root or CAP_SYS_ADMIN$/,
    );
  });

  test('without the right to make a UTS namespace (as nobody), the probe fails with the reason', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imgbackup-nobody-'));
    const wrapper = join(dir, 'unshare-as-nobody');
    await writeFile(
      wrapper,
      '#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups unshare "$@"\n',
      { mode: 0o755 },
    );
    try {
      const err = probeUts(wrapper);
      assert.ok(err instanceof Error);
      assert.match(err.message, /\(exit 1: unshare: unshare failed: Operation not permitted\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a hostname that is not one is refused', () => {
    assert.throws(() => report('has space'), /is not a hostname/);
    assert.throws(() => report(''), /is not a hostname/);
  });
});
