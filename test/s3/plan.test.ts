import assert from 'node:assert/strict';
import { mkdtemp, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { snapshot } from '../helpers/s3.js';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import {
  BATCH,
  PLATE_B,
  plateObjects,
  PROJECT,
  SIBLINGS,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

interface Line {
  type: string;
  plateId?: string;
  status?: string;
  files?: number;
  bytesIn?: number;
  details?: { state: string; tmpdirBytes: number };
  tmpdir?: { neededBytes: number; freeBytes: number | null; maxProcs: number; enough: boolean };
  exitCode?: number;
}

const tag = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;
const OTHER = SIBLINGS[0]!; // 20586

for (const name of testServerNames()) {
  describe(`plan against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-plan-test-');
    let live: string;
    let cold: string;
    let csv: string;
    const files = new Map<string, number>();
    const bytes = new Map<string, number>();

    before(async () => {
      live = await suite.server.newBucket('live');
      cold = await suite.server.newBucket('cold');
      for (const p of [PLATE_B, OTHER]) {
        const objs = plateObjects(p);
        await uploadAll(suite.client, live, objs);
        const real = [...objs].filter(([k]) => !k.endsWith('/'));
        files.set(p.plateId, real.length);
        bytes.set(
          p.plateId,
          real.reduce((n, [, v]) => n + v.length, 0),
        );
      }
      csv = await writePlatesCsv([PLATE_B, OTHER], suite.work);
    });

    const run = (cmd: string, extra: string[] = [], plates = csv) =>
      runCli(
        [cmd, ...plateArgs({ csv: plates, live: live, cold: cold }), ...extra],
        serverEnv(suite.server),
      );

    async function planJson(extra: string[] = []): Promise<Line[]> {
      const r = await run('plan', ['--json', '--tmpdir', suite.work, ...extra]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      return r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Line);
    }
    const stateOf = (lines: Line[], p: FixturePlate) =>
      lines.find((l) => l.type === 'plate' && l.plateId === p.plateId)?.status;

    test('before archive: files, bytes, "not archived", tmpdir need; changes nothing', async () => {
      const snap = [await snapshot(suite.client, live), await snapshot(suite.client, cold)];
      const lines = await planJson(['--max-procs', '2']);
      for (const p of [PLATE_B, OTHER]) {
        const l = lines.find((x) => x.plateId === p.plateId)!;
        assert.equal(l.status, 'not archived');
        assert.equal(l.files, files.get(p.plateId));
        assert.equal(l.bytesIn, bytes.get(p.plateId));
        assert.ok(l.details!.tmpdirBytes >= bytes.get(p.plateId)!);
      }
      const summary = lines.at(-1)!;
      assert.equal(summary.type, 'summary');
      assert.equal(summary.exitCode, 0);
      const both = bytes.get(PLATE_B.plateId)! + bytes.get(OTHER.plateId)!;
      assert.ok(summary.tmpdir!.neededBytes >= both, 'two plates at once need both');
      assert.equal(summary.tmpdir!.maxProcs, 2);
      assert.ok(typeof summary.tmpdir!.freeBytes === 'number' && summary.tmpdir!.freeBytes > 0);
      const one = (await planJson(['--max-procs', '1'])).at(-1)!;
      const largest = Math.max(
        ...lines.filter((l) => l.type === 'plate').map((l) => l.details!.tmpdirBytes),
      );
      assert.equal(one.tmpdir!.neededBytes, largest, 'one plate at once needs the largest');
      assert.deepEqual(
        [await snapshot(suite.client, live), await snapshot(suite.client, cold)],
        snap,
      );
      assert.deepEqual(
        (await readdir(suite.work)).filter((f) => f !== 'plates.csv'),
        [],
        'nothing written locally',
      );
    });

    test('the table names each state and the tmpdir line', async () => {
      const r = await run('plan', ['--tmpdir', suite.work]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /2058\s+not archived\s+6\s/);
      assert.match(r.stdout, /tmpdir: archive at --max-procs 2 needs at most .* free/);
    });

    test('after archive: "archived", and "partial" when an output is missing', async () => {
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const a = await run('archive', ['--tmpdir', tmp]);
      assert.equal(a.code, 0, a.stderr + a.stdout);
      await suite.client.send(
        new DeleteObjectCommand({
          Bucket: live,
          Key: `projects/${PROJECT}/workspace/backup/${tag(OTHER)}_delete_s3.sh`,
        }),
      );
      const lines = await planJson();
      assert.equal(stateOf(lines, PLATE_B), 'archived');
      assert.equal(stateOf(lines, OTHER), 'partial');
      assert.equal(lines.at(-1)!.tmpdir!.neededBytes, 0, 'nothing left to archive');
    });

    test('after verify: "verified"; after delete: "deleted"', async () => {
      const only = await writePlatesCsv([PLATE_B], await mkdtemp(join(suite.work, 'b-')));
      const v = await run('verify', [], only);
      assert.equal(v.code, 0, v.stderr + v.stdout);
      assert.equal(stateOf(await planJson(), PLATE_B), 'verified');
      const d = await run('delete', ['--yes'], only);
      assert.equal(d.code, 0, d.stderr + d.stdout);
      const lines = await planJson();
      assert.equal(stateOf(lines, PLATE_B), 'deleted');
      assert.equal(stateOf(lines, OTHER), 'partial');
      assert.equal(lines.find((l) => l.plateId === PLATE_B.plateId)!.files, 0);
    });
  });
}
