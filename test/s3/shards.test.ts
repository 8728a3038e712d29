// Shards (README "Shards"): two runs given shards 0/2 and 1/2, by flag or by the engines'
// variables, cover every plate of the CSV exactly once whatever its order; each says which shard
// it ran; every plate command takes a shard and refuses a bad one before touching anything.
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli, serverEnv, plateArgs, type CliResult } from '../helpers/cli.js';
import {
  PLATE_B,
  plateObjects,
  SIBLINGS,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { startHost, stopAllHosts } from '../helpers/host.js';
import { snapshot } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

interface Line {
  type: string;
  plateId?: string;
  status?: string;
  plates?: number;
  shard?: { index: number; count: number; source: string; plates: number; csvPlates: number };
  exitCode?: number;
}

const PLATES: FixturePlate[] = [
  PLATE_B,
  ...SIBLINGS,
  ...[1, 2, 3].map((i) => ({ plateId: `plate-${i}`, plateIdFull: `plate-${i}` })),
];
const ALL_IDS = PLATES.map((p) => p.plateId).sort();
/**
 * The plates of each shard, from python3 (not from the code under test):
 * [p for p in ids if int.from_bytes(hashlib.sha256(p.encode()).digest()[:8], 'big') % n == i]
 */
const SHARDS_OF_2 = [
  ['2058-old', 'plate-2'],
  ['2058', '20586', 'plate-1', 'plate-3'],
];
const SHARD_1_OF_3 = ['20586'];
/** The commands of the test below that claim their plates even as run there (no --dry-run). */
const CLAIMING_WITHOUT_DRY_RUN = ['verify'];

const jsonLines = (r: CliResult): Line[] =>
  r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);
const platesOf = (lines: Line[]) => lines.filter((l) => l.type === 'plate').map((l) => l.plateId!);
const summaryOf = (lines: Line[]) => lines.find((l) => l.type === 'summary')!;

for (const name of testServerNames()) {
  describe(`shards against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-shards-test-');
    after(stopAllHosts);
    let live: string;
    let cold: string;
    let csv: string;
    let reversed: string;

    before(async () => {
      live = await suite.server.newBucket('live');
      cold = await suite.server.newBucket('cold');
      for (const p of PLATES) await uploadAll(suite.client, live, plateObjects(p));
      csv = await writePlatesCsv(PLATES, suite.work);
      reversed = await writePlatesCsv([...PLATES].reverse(), await mkdtemp(join(suite.work, 'r-')));
    });

    const run = (
      cmd: string,
      extra: string[],
      env: NodeJS.ProcessEnv = {},
      plates = csv,
    ): Promise<CliResult> =>
      runCli([cmd, ...plateArgs({ csv: plates, live, cold }), ...extra], {
        ...serverEnv(suite.server),
        ...env,
      });

    test('plan: shards 0/2 and 1/2 cover every plate once; the summary names the shard', async () => {
      const seen: string[][] = [];
      for (const index of [0, 1]) {
        const r = await run('plan', ['--json', '--shard', `${index}/2`, '--tmpdir', suite.work]);
        assert.equal(r.code, 0, r.stderr);
        const lines = jsonLines(r);
        const ids = platesOf(lines);
        assert.deepEqual([...ids].sort(), SHARDS_OF_2[index]);
        assert.deepEqual(summaryOf(lines).shard, {
          index,
          count: 2,
          source: '--shard',
          plates: ids.length,
          csvPlates: PLATES.length,
        });
        assert.equal(summaryOf(lines).plates, ids.length);
        seen.push(ids);
      }
      assert.deepEqual([...seen[0]!, ...seen[1]!].sort(), ALL_IDS);
    });

    test("the human summary: one shard line, and nothing about the other shard's plates", async () => {
      const [mine, others] = SHARDS_OF_2 as [string[], string[]];
      const r = await run('plan', ['--shard', '0/2', '--tmpdir', suite.work]);
      assert.equal(r.code, 0, r.stderr);
      const out = r.stdout + r.stderr;
      const shardLines = out.split('\n').filter((l) => l.startsWith('shard '));
      assert.deepEqual(shardLines, [
        `shard 0/2 (--shard): ${mine.length} of ${PLATES.length} plates in the CSV`,
      ]);
      for (const id of mine) assert.match(r.stdout, new RegExp(`^${id}\\s`, 'm'));
      for (const id of others)
        assert.doesNotMatch(out, new RegExp(`(^|\\s)${id}(\\s|:|$)`, 'm'), `${id} is shown`);
    });

    test("the engines' variables give the same shards as --shard, whatever the CSV order", async () => {
      const byFlag = platesOf(jsonLines(await run('plan', ['--json', '--shard', '1/3'])));
      assert.deepEqual(byFlag, SHARD_1_OF_3);
      const batch = await run(
        'plan',
        ['--json'],
        { AWS_BATCH_JOB_ARRAY_INDEX: '1', AWS_BATCH_JOB_ARRAY_SIZE: '3' },
        reversed,
      );
      assert.equal(batch.code, 0, batch.stderr);
      assert.deepEqual(platesOf(jsonLines(batch)).sort(), [...byFlag].sort());
      assert.equal(summaryOf(jsonLines(batch)).shard?.source, 'AWS_BATCH_JOB_ARRAY_INDEX');
      const k8s = await run(
        'plan',
        ['--json'],
        { JOB_COMPLETION_INDEX: '1', IMGBACKUP_SHARD_COUNT: '3' },
        reversed,
      );
      assert.equal(k8s.code, 0, k8s.stderr);
      assert.deepEqual(platesOf(jsonLines(k8s)).sort(), [...byFlag].sort());
      assert.deepEqual(summaryOf(jsonLines(k8s)).shard, {
        index: 1,
        count: 3,
        source: 'JOB_COMPLETION_INDEX',
        plates: byFlag.length,
        csvPlates: PLATES.length,
      });
      const flagCount = await run('plan', ['--json', '--shard-count', '3'], {
        JOB_COMPLETION_INDEX: '1',
        IMGBACKUP_SHARD_COUNT: '7',
      });
      assert.deepEqual(platesOf(jsonLines(flagCount)).sort(), [...byFlag].sort());
    });

    // Several hosts need S3 leases; s3rver fails their probe, and --shard is refused there
    // (test/s3/lease.test.ts).
    if (name !== 's3rver')
      test('archive as two array children on two hosts at once: every plate archived once, verify --deep passes', async () => {
        // each its own hostname, tmpdir and process (test/helpers/host.ts); the job log names the host
        const hosts = [0, 1].map((index) =>
          startHost({
            hostname: `batch-child-${index}`,
            args: [
              'archive',
              ...plateArgs({ csv, live, cold }),
              '--json',
              '--log-dir',
              join(suite.work, `log-${index}`),
            ],
            env: {
              ...serverEnv(suite.server),
              AWS_BATCH_JOB_ARRAY_INDEX: String(index),
              AWS_BATCH_JOB_ARRAY_SIZE: '2',
            },
          }),
        );
        const runs = await Promise.all(hosts.map((h) => h.exited));
        for (const [index, h] of hosts.entries()) {
          const joblog = await readFile(join(suite.work, `log-${index}`, 'archive.joblog'), 'utf8');
          const rows = joblog.trim().split('\n').slice(1);
          assert.deepEqual(
            rows.map((row) => [row.split('\t')[1], row.split('\t')[8]]).sort(),
            SHARDS_OF_2[index]!.map((id) => [h.hostname, id]),
          );
          await h.stop();
        }
        const archived: string[] = [];
        for (const [index, r] of runs.entries()) {
          assert.equal(r.code, 0, r.stderr);
          const lines = jsonLines(r);
          for (const l of lines.filter((x) => x.type === 'plate'))
            assert.equal(l.status, 'archived');
          assert.equal(summaryOf(lines).shard?.index, index);
          archived.push(...platesOf(lines));
        }
        assert.deepEqual(archived.sort(), ALL_IDS);
        // the whole CSV, no shard: each plate's archive holds its sources, byte for byte
        const v = await run('verify', ['--json', '--deep']);
        assert.equal(v.code, 0, v.stderr);
        assert.deepEqual(summaryOf(jsonLines(v)), {
          ...summaryOf(jsonLines(v)),
          plates: PLATES.length,
          counts: { verified: PLATES.length },
        });
      });

    test('every plate command takes the shard, and refuses a bad one in one line, exit 2', async () => {
      const toDir = await mkdtemp(join(suite.work, 'restore-'));
      const extra: Record<string, string[]> = {
        plan: [],
        archive: ['--tmpdir', suite.work],
        verify: [],
        'collect-deletes': ['--out', join(suite.work, 'never.sh')],
        delete: ['--yes'],
        'restore-request': [],
        'restore-status': [],
        restore: ['--to-dir', toDir],
      };
      const before = [await snapshot(suite.client, live), await snapshot(suite.client, cold)];
      for (const [cmd, args] of Object.entries(extra)) {
        const bad = await run(cmd, [...args, '--shard', '2/2']);
        assert.equal(bad.code, 2, `${cmd}: ${bad.stderr}`);
        assert.equal(
          bad.stderr,
          'imgbackup: --shard 2/2: the shard index must be below the count 2, from 0 to 1\n',
          cmd,
        );
        const noCount = await run(cmd, args, { JOB_COMPLETION_INDEX: '1' });
        assert.equal(noCount.code, 2, `${cmd}: ${noCount.stderr}`);
        assert.match(
          noCount.stderr,
          /^imgbackup: JOB_COMPLETION_INDEX="1" gives a shard index but no shard count: [^\n]+\n$/,
        );
      }
      assert.deepEqual(
        [await snapshot(suite.client, live), await snapshot(suite.client, cold)],
        before,
      );
      // a good shard is taken by each: its summary names it
      const dryRun = ['archive', 'delete', 'restore-request', 'restore'];
      const refused: string[] = [];
      for (const [cmd, args] of Object.entries(extra)) {
        const good = await run(cmd, [
          ...args,
          '--json',
          '--shard',
          '0/2',
          ...(dryRun.includes(cmd) ? ['--dry-run'] : []),
        ]);
        // s3rver ignores conditional PUTs: a command that claims plates refuses the shard there
        if (name === 's3rver' && good.code === 2) {
          assert.match(good.stderr, /^imgbackup: --shard needs S3 leases, and [^\n]+\n$/, cmd);
          refused.push(cmd);
          continue;
        }
        assert.equal(summaryOf(jsonLines(good)).shard?.index, 0, `${cmd}: ${good.stderr}`);
      }
      assert.deepEqual(refused, name === 's3rver' ? CLAIMING_WITHOUT_DRY_RUN : []);
    });

    test('an empty shard (more shards than plates) says so and exits 0', async () => {
      // 5/8 holds none of the six ids (python3, as above)
      const r = await run('archive', ['--shard', '5/8', '--tmpdir', suite.work]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^shard 5\/8 \(--shard\): 0 of 6 plates in the CSV$/m);
      assert.match(r.stdout, /^0 plate\(s\): $/m);
    });

    test('restore-request --prefix has no plates CSV to split: a shard is refused', async () => {
      const r = await runCli(
        ['restore-request', '--prefix', `s3://${cold}/projects/`, '--dry-run'],
        { ...serverEnv(suite.server), JOB_COMPLETION_INDEX: '0', IMGBACKUP_SHARD_COUNT: '2' },
      );
      assert.equal(r.code, 2, r.stderr);
      assert.equal(
        r.stderr,
        'imgbackup: a shard (JOB_COMPLETION_INDEX) splits a plates CSV, and this run has none: unset the shard variables or drop --shard / --shard-count\n',
      );
    });
  });
}
