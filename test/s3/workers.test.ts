// Plates on worker threads of their own (README "Design"): one event loop per plate in flight,
// failures that stay the plate's own, and interrupts that reach every worker.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import {
  BATCH,
  imageLike,
  PLATE_B,
  plateObjects,
  PROJECT,
  readTree,
  SIBLINGS,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
  type GroundTruth,
} from '../helpers/fixtures.js';
import { getBytes, keysUnder } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

const tag = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;
const plate = (id: string): FixturePlate => ({ plateId: id, plateIdFull: id });
const FOURTH = plate('2058-new');
const LOCKED = plate('locked-plate');
const FINE = plate('fine-plate');
/** More plates than --max-procs 2 runs at once: their threads are reused. */
const POOLED = [1, 2, 3, 4, 5, 6].map((i) => plate(`pooled-${i}`));
/** A plate whose worker fails hard, and the one after it. */
const POISON = plate('poison-plate');
const AFTER = plate('after-poison');
/** Two plates of ~24 MB each: long enough to be interrupted while both are being written. */
const SLOW = [plate('slow-1'), plate('slow-2')];

function slowPlateObjects(p: FixturePlate, seed: number): GroundTruth {
  const [images, , , backend] = sourcePrefixes(p) as [string, string, string, string];
  return new Map([
    [`${images}a.tiff`, imageLike(12 * 1024 * 1024, seed)],
    [`${images}b.tiff`, imageLike(12 * 1024 * 1024, seed + 1)],
    [`${backend}${p.plateId}.sqlite`, imageLike(10_000, seed + 2)],
  ]);
}

/** Each line of a plate's --log-dir log, parsed. */
async function logLines(logDir: string, plateId: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(logDir, `${plateId}.log`), 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Distinct thread ids of each plate's lines (one each: a plate runs on one thread). */
async function plateTids(logDir: string, plates: FixturePlate[]): Promise<Map<string, unknown>> {
  const tids = new Map<string, unknown>();
  for (const p of plates) {
    const lines = await logLines(logDir, p.plateId);
    assert.ok(lines.length > 0, `${p.plateId} logged`);
    const mine = new Set(lines.map((l) => l.tid));
    assert.equal(mine.size, 1, `${p.plateId}: one thread (${[...mine].join(', ')})`);
    tids.set(p.plateId, lines[0]!.tid);
  }
  return tids;
}

/** Each plate's result in a --json run's stdout. */
function resultsByPlate(stdout: string): Map<string, { status: string; message?: string }> {
  const byPlate = new Map<string, { status: string; message?: string }>();
  for (const line of stdout.trim().split('\n')) {
    const j = JSON.parse(line) as { plateId?: string; status: string; message?: string };
    if (j.plateId) byPlate.set(j.plateId, j);
  }
  return byPlate;
}

for (const name of testServerNames()) {
  describe(`plates on worker threads against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-workers-test-');
    let live: string;
    let cold: string;
    const truth = new Map<FixturePlate, GroundTruth>();

    before(async () => {
      for (const p of [...POOLED, POISON, AFTER]) truth.set(p, plateObjects(p));
      live = await suite.server.newBucket('live');
      cold = await suite.server.newBucket('cold');
      for (const p of [PLATE_B, ...SIBLINGS, FOURTH, LOCKED, FINE]) {
        await uploadAll(suite.client, live, plateObjects(p));
      }
      for (const p of [...POOLED, POISON, AFTER])
        await uploadAll(suite.client, live, truth.get(p)!);
      for (const [i, p] of SLOW.entries()) {
        await uploadAll(suite.client, live, slowPlateObjects(p, 100 + 10 * i));
      }
    });

    const args = (csv: string, extra: string[], coldBucket = cold) => [
      'archive',
      ...plateArgs({ csv, live, cold: coldBucket }),
      ...extra,
    ];

    test('--max-procs 4 runs four plates at once, each on an event loop of its own', async () => {
      const plates = [PLATE_B, ...SIBLINGS, FOURTH];
      const dir = await mkdtemp(join(suite.work, 'four-'));
      const csv = await writePlatesCsv(plates, dir);
      const logDir = join(dir, 'logs');
      let pid = 0;
      const r = await runCli(
        args(csv, ['--tmpdir', dir, '--max-procs', '4', '--log-dir', logDir]),
        serverEnv(suite.server),
        { onSpawn: (p) => (pid = p) },
      );
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const tids = new Set<unknown>();
      for (const p of plates) {
        const lines = await logLines(logDir, p.plateId);
        assert.ok(lines.length > 0, `${p.plateId} logged`);
        // Every line of a plate names the thread that wrote it: one thread per plate.
        const mine = new Set(lines.map((l) => l.tid));
        assert.equal(mine.size, 1, `${p.plateId}: one thread (${[...mine].join(', ')})`);
        tids.add(lines[0]!.tid);
      }
      assert.equal(tids.size, 4, `four threads: ${[...tids].join(', ')}`);
      for (const tid of tids) {
        assert.equal(typeof tid, 'number');
        assert.notEqual(tid, pid, 'no plate ran on the main thread');
      }
      // The job log: all four were in flight at once (each started before any ended).
      const rows = (await readFile(join(logDir, 'archive.joblog'), 'utf8'))
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.split('\t'));
      assert.equal(rows.length, 4);
      const starts = rows.map((c) => Number(c[2]));
      const ends = rows.map((c) => Number(c[2]) + Number(c[3]));
      assert.ok(Math.max(...starts) < Math.min(...ends), `overlapping runs: ${rows.join(' | ')}`);
    });

    /** GNU tar rebuilds exactly what was uploaded for `p` from its tarballs in `coldBucket`. */
    async function assertTarballsHold(p: FixturePlate, coldBucket: string): Promise<void> {
      const dir = await mkdtemp(join(suite.work, `x-${p.plateId}-`));
      for (const t of ['images_illum_analysis', 'backend']) {
        const key = `imaging_analysis/${PROJECT}/plates/${tag(p)}_${t}.tar.gz`;
        const file = join(suite.work, `${p.plateId}-${t}.tar.gz`);
        await writeFile(file, await getBytes(suite.client, coldBucket, key));
        execFileSync('tar', ['xzf', file, '--strip-components=1', '-C', dir]);
      }
      const tree = await readTree(dir);
      const expected = new Map(
        [...truth.get(p)!]
          .filter(([k]) => !k.endsWith('/'))
          .map(([k, v]) => [k.slice('projects/'.length), v]),
      );
      assert.deepEqual([...tree.keys()].sort(), [...expected.keys()].sort(), p.plateId);
      for (const [path, bytes] of expected) {
        assert.ok(tree.get(path)!.equals(bytes), `${p.plateId}: ${path} differs`);
      }
    }

    test('six plates at --max-procs 2 run on at most two threads, reused plate after plate', async () => {
      const dir = await mkdtemp(join(suite.work, 'pooled-'));
      const cold2 = await suite.server.newBucket('cold');
      const csv = await writePlatesCsv(POOLED, dir);
      const logDir = join(dir, 'logs');
      const run = (command: string, extra: string[]) =>
        runCli(
          [
            command,
            ...plateArgs({ csv, live, cold: cold2 }),
            '--max-procs',
            '2',
            '--json',
            '--log-dir',
            logDir,
            ...extra,
          ],
          serverEnv(suite.server),
        );
      const r = await run('archive', ['--tmpdir', dir]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const archived = resultsByPlate(r.stdout);
      for (const p of POOLED) assert.equal(archived.get(p.plateId)?.status, 'archived', r.stdout);
      const tids = new Set((await plateTids(logDir, POOLED)).values());
      assert.ok(tids.size <= 2, `at most two threads: ${[...tids].join(', ')}`);
      for (const p of POOLED) await assertTarballsHold(p, cold2);
      // verify --deep reads every tarball back, on the pool's threads too.
      const v = await run('verify', ['--deep']);
      assert.equal(v.code, 0, v.stderr + v.stdout);
      const verified = resultsByPlate(v.stdout);
      for (const p of POOLED) assert.equal(verified.get(p.plateId)?.status, 'verified', v.stdout);
    });

    test('a worker that failed hard is not reused: the next plate on --max-procs 1 succeeds', async () => {
      const dir = await mkdtemp(join(suite.work, 'poison-'));
      const cold2 = await suite.server.newBucket('cold');
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      // As in the test below: an untyped file-system error inside the first plate's worker.
      await mkdir(join(tmp, `${tag(POISON)}_backend.tar.gz`));
      const csv = await writePlatesCsv([POISON, AFTER], dir);
      const logDir = join(dir, 'logs');
      const r = await runCli(
        args(csv, ['--tmpdir', tmp, '--max-procs', '1', '--json', '--log-dir', logDir], cold2),
        serverEnv(suite.server),
      );
      assert.equal(r.code, 1, r.stderr + r.stdout);
      const byPlate = resultsByPlate(r.stdout);
      assert.equal(byPlate.get(POISON.plateId)?.status, 'failed', r.stdout);
      assert.match(byPlate.get(POISON.plateId)?.message ?? '', /EISDIR|is a directory/i);
      assert.equal(byPlate.get(AFTER.plateId)?.status, 'archived', r.stdout);
      await assertTarballsHold(AFTER, cold2);
      const coldKeys = await keysUnder(suite.client, cold2, '');
      assert.ok(!coldKeys.some((k) => k.includes(tag(POISON))), 'nothing of the failed plate');
      // The plate after it ran on a fresh thread: the failed one's was terminated.
      const tids = await plateTids(logDir, [POISON, AFTER]);
      assert.notEqual(tids.get(POISON.plateId), tids.get(AFTER.plateId), 'a fresh thread');
    });

    test('a plate failing in its worker, typed or not, fails that plate alone, with its message', async () => {
      const dir = await mkdtemp(join(suite.work, 'fail-'));
      const cold2 = await suite.server.newBucket('cold');
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      // A directory where the plate's leftover tarball would be: removing what an earlier run
      // left throws a plain (untyped) file-system error inside that plate's worker.
      await mkdir(join(tmp, `${tag(LOCKED)}_backend.tar.gz`));
      const csv = await writePlatesCsv([plate('no-such-plate'), LOCKED, FINE], dir);
      const r = await runCli(
        args(csv, ['--tmpdir', tmp, '--max-procs', '3', '--json'], cold2),
        serverEnv(suite.server),
      );
      assert.equal(r.code, 1, r.stderr + r.stdout);
      const byPlate = resultsByPlate(r.stdout);
      assert.equal(byPlate.get('no-such-plate')?.status, 'failed');
      assert.match(
        byPlate.get('no-such-plate')?.message ?? '',
        /no objects under its four sources/,
      );
      assert.equal(byPlate.get('locked-plate')?.status, 'failed');
      assert.match(byPlate.get('locked-plate')?.message ?? '', /EISDIR|is a directory/i);
      assert.match(r.stderr, /unexpected error/, 'an untyped error is logged as unexpected');
      assert.equal(byPlate.get('fine-plate')?.status, 'archived', r.stdout);
      const coldKeys = await keysUnder(suite.client, cold2, '');
      assert.ok(coldKeys.some((k) => k.includes(`${tag(FINE)}_backend.tar.gz`)));
      assert.ok(!coldKeys.some((k) => k.includes(tag(LOCKED))), 'nothing of the failed plate');
    });

    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const) {
      test(`${signal} with two plates in two workers: both stop, exit ${code}, nothing left`, async () => {
        const dir = await mkdtemp(join(suite.work, `sig-${code}-`));
        const tmp = await mkdtemp(join(suite.work, 'tmp-'));
        const csv = await writePlatesCsv(SLOW, dir);
        let pid: number | undefined;
        let sent = false;
        const r = await runCli(
          args(csv, ['--tmpdir', tmp, '--max-procs', '2']),
          serverEnv(suite.server),
          {
            onSpawn: (p) => (pid = p),
            onStderr: () => {
              if (sent) return;
              sent = true;
              // Once both plates' tarballs are being written (or after 5 s), interrupt.
              void (async () => {
                const until = Date.now() + 5000;
                while (Date.now() < until && (await readdir(tmp)).length < 4) {
                  await new Promise((res) => setTimeout(res, 20));
                }
                process.kill(pid!, signal);
              })();
            },
          },
        );
        assert.ok(sent);
        assert.equal(r.signal, null, 'the CLI exits by itself, not killed by the signal');
        assert.equal(r.code, code, r.stderr + r.stdout);
        assert.match(r.stdout, /slow-1\s+interrupted/, r.stdout);
        assert.match(r.stdout, /slow-2\s+interrupted/, r.stdout);
        assert.doesNotMatch(r.stderr, /unexpected error|worker thread exited/);
        assert.deepEqual(await readdir(tmp), [], 'tmpdir is empty');
        const coldKeys = await keysUnder(suite.client, cold, '');
        const liveKeys = await keysUnder(suite.client, live, '');
        for (const p of SLOW) {
          assert.deepEqual(
            coldKeys.filter((k) => k.includes(tag(p))),
            [],
            `nothing of ${p.plateId} in the cold bucket`,
          );
          assert.deepEqual(
            liveKeys.filter((k) => k.includes('/backup/') && k.includes(tag(p))),
            [],
            `no listing, marker or delete script of ${p.plateId}`,
          );
        }
      });
    }
  });
}
