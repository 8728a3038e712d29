// The demo flow (README "Quick start") driven through the built CLI with --json.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import {
  PLATE_A,
  PLATE_B,
  plateObjects,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
  type GroundTruth,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

interface PlateLine {
  type: 'plate';
  plateId: string;
  status: string;
  files: number;
  bytesIn: number;
}
interface SummaryLine {
  type: 'summary';
  command: string;
  plates: number;
  counts: Record<string, number>;
  files: number;
  bytesIn: number;
  exitCode: number;
}

/** stdout must be JSON lines only: one per plate, then the summary. */
function parseJsonLines(stdout: string): { plates: PlateLine[]; summary: SummaryLine } {
  assert.ok(stdout.endsWith('\n'), 'stdout ends with a newline');
  const lines = stdout.slice(0, -1).split('\n');
  const objs = lines.map((l) => {
    assert.doesNotThrow(() => JSON.parse(l), `not a JSON line: ${l}`);
    return JSON.parse(l) as PlateLine | SummaryLine;
  });
  const summary = objs.at(-1)!;
  assert.equal(summary.type, 'summary', 'the last line is the summary');
  const plates = objs.slice(0, -1);
  for (const p of plates) assert.equal(p.type, 'plate');
  return { plates: plates as PlateLine[], summary: summary as SummaryLine };
}

for (const name of testServerNames()) {
  describe(`demo flow with --json against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-demo-test-');
    const truth = new Map<FixturePlate, GroundTruth>();

    test('archive → verify --deep → collect-deletes → delete --dry-run', async () => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      for (const p of [PLATE_A, PLATE_B]) {
        truth.set(p, plateObjects(p, { manyFiles: 30, bigFile: 200_000 }));
        await uploadAll(suite.client, live, truth.get(p)!);
      }
      const csv = await writePlatesCsv([PLATE_A, PLATE_B], suite.work);
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const common = [...plateArgs({ csv: csv, live: live, cold: cold }), '--json'];
      const files = (p: FixturePlate) => [...truth.get(p)!.keys()].filter((k) => !k.endsWith('/'));
      const bytes = (p: FixturePlate) =>
        [...truth.get(p)!.values()].reduce((n, v) => n + v.length, 0);

      const steps: [string, string[], string][] = [
        ['archive', ['--tmpdir', tmp, '--max-procs', '2'], 'archived'],
        ['verify', ['--deep'], 'verified'],
        ['collect-deletes', ['--out', join(suite.work, 'delete_s3.sh')], 'collected'],
        ['delete', ['--dry-run', '--list', join(suite.work, 'keys.jsonl')], 'planned'],
      ];
      for (const [cmd, extra, status] of steps) {
        const r = await runCli([cmd, ...common, ...extra], serverEnv(suite.server));
        assert.equal(r.code, 0, `${cmd}: ${r.stderr}${r.stdout}`);
        const { plates, summary } = parseJsonLines(r.stdout);
        assert.deepEqual(
          plates.map((p) => [p.plateId, p.status]).sort(),
          [
            ['2058', status],
            ['BR00092655', status],
          ],
          cmd,
        );
        assert.equal(summary.command, cmd);
        assert.equal(summary.plates, 2);
        assert.deepEqual(summary.counts, { [status]: 2 });
        assert.equal(summary.exitCode, 0);
        if (cmd === 'archive') {
          for (const p of [PLATE_A, PLATE_B]) {
            const line = plates.find((x) => x.plateId === p.plateId)!;
            assert.equal(line.files, files(p).length);
            assert.equal(line.bytesIn, bytes(p));
          }
          assert.equal(summary.files, files(PLATE_A).length + files(PLATE_B).length);
          assert.equal(summary.bytesIn, bytes(PLATE_A) + bytes(PLATE_B));
          assert.deepEqual(await readdir(tmp), []);
        }
        if (cmd === 'collect-deletes') {
          const plan = (await readFile(join(suite.work, 'delete_s3.plan.jsonl'), 'utf8'))
            .trim()
            .split('\n')
            .map((l) => (JSON.parse(l) as { key: string }).key)
            .sort();
          assert.deepEqual(plan, [...files(PLATE_A), ...files(PLATE_B)].sort());
        }
        if (cmd === 'delete') {
          // a summary per plate on stderr, keeping stdout JSON only; every key in --list FILE
          for (const p of [PLATE_A, PLATE_B])
            assert.ok(r.stderr.includes(`${p.plateId}: would delete ${files(p).length} keys (`));
          const listed = (await readFile(join(suite.work, 'keys.jsonl'), 'utf8'))
            .trim()
            .split('\n')
            .map((l) => (JSON.parse(l) as { bucket: string; key: string }).key)
            .sort();
          assert.deepEqual(listed, [...files(PLATE_A), ...files(PLATE_B)].sort());
        }
      }
    });
  });
}
