// What a user sees on stderr: the zlib-fallback warning only where compression happens, once;
// log warnings as human lines (JSON only in --log-dir files and with --json).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { plateArgs, runCli, serverEnv } from '../helpers/cli.js';
import {
  PLATE_B,
  plateObjects,
  SIBLINGS,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

/** The loader acts as if the addon were not built (README "Tests"). */
const NO_ADDON = { IMGBACKUP_NO_ADDON: '1' };
const FALLBACK = /compressing with zlib/g;
const count = (text: string, re: RegExp) => (text.match(re) ?? []).length;

for (const name of testServerNames()) {
  describe(`what the CLI prints on stderr, against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-output-');
    let live: string;
    let cold: string;
    const plates: FixturePlate[] = [PLATE_B, SIBLINGS[0]!];

    before(async () => {
      live = await suite.server.newBucket('live');
      cold = await suite.server.newBucket('cold');
      for (const p of plates) await uploadAll(suite.client, live, plateObjects(p));
    });

    test('without the addon, the zlib warning comes once, from archive alone, and only when it compresses', async () => {
      const env = { ...serverEnv(suite.server), ...NO_ADDON };
      const dir = await mkdtemp(join(suite.work, 'fallback-'));
      const csv = await writePlatesCsv(plates, dir);
      const flags = plateArgs({ csv, live, cold });
      const bad = join(dir, 'bad.csv');
      await writeFile(bad, 'plate_id,plate_id_full\n../x,y\n');
      const quiet: [string, string[], number][] = [
        ['a usage error', ['archive', '--project-name', 'P'], 2],
        ['a bad CSV', ['archive', ...plateArgs({ csv: bad, live, cold })], 2],
        ['archive --dry-run', ['archive', ...flags, '--tmpdir', dir, '--dry-run'], 0],
        ['plan', ['plan', ...flags, '--tmpdir', dir], 0],
      ];
      for (const [what, args, code] of quiet) {
        const r = await runCli(args, env);
        assert.equal(r.code, code, `${what}: ${r.stderr}`);
        assert.equal(count(r.stderr, FALLBACK), 0, `${what}: no zlib warning in:\n${r.stderr}`);
      }
      const a = await runCli(['archive', ...flags, '--tmpdir', dir, '--max-procs', '2'], env);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(count(a.stderr, FALLBACK), 1, `once for two plates:\n${a.stderr}`);
      assert.match(
        a.stderr,
        /^imgbackup: compressing with zlib \(~4x the CPU of isa-l\), as the native gzip addon is not built \(IMGBACKUP_NO_ADDON=1 is set\); apt-get install libdeflate-dev libisal-dev, then npm rebuild$/m,
      );
      for (const [what, args] of [
        ['verify', ['verify', ...flags]],
        ['archive of archived plates', ['archive', ...flags, '--tmpdir', dir]],
      ] as const) {
        const r = await runCli([...args], env);
        assert.equal(r.code, 0, `${what}: ${r.stderr}`);
        assert.equal(count(r.stderr, FALLBACK), 0, `${what}: no zlib warning in:\n${r.stderr}`);
      }
    });

    test('verify after a file was added since the archive: a human warning line, JSON only in --log-dir and --json', async () => {
      const env = serverEnv(suite.server);
      const dir = await mkdtemp(join(suite.work, 'log-'));
      const plate = SIBLINGS[1]!;
      await uploadAll(suite.client, live, plateObjects(plate));
      const csv = await writePlatesCsv([plate], dir);
      const flags = plateArgs({ csv, live, cold });
      const a = await runCli(['archive', ...flags, '--tmpdir', dir], env);
      assert.equal(a.code, 0, a.stderr);
      const added = `${sourcePrefixes(plate)[0]}added later.tif`;
      await suite.client.send(
        new PutObjectCommand({ Bucket: live, Key: added, Body: Buffer.from('new\n') }),
      );
      const logDir = join(dir, 'logs');
      const v = await runCli(['verify', ...flags, '--log-dir', logDir], env);
      assert.equal(v.code, 0, v.stderr);
      const warning = `${plate.plateId}: sources changed since the archive: added (1): ${JSON.stringify(added)}`;
      assert.ok(v.stderr.split('\n').includes(warning), `${warning}\nin:\n${v.stderr}`);
      assert.doesNotMatch(v.stderr, /\{"level"/);
      const records = (await readFile(join(logDir, `${plate.plateId}.log`), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { level: number; msg: string; added?: string[] });
      const rec = records.find((r) => r.msg === 'sources changed since the archive');
      assert.deepEqual([rec?.level, rec?.added], [40, [added]], 'the plate log keeps JSON');
      const j = await runCli(['verify', ...flags, '--json'], env);
      assert.equal(j.code, 0, j.stderr);
      const line = j.stderr.split('\n').find((l) => l.startsWith('{"level":40'));
      assert.ok(line, `a JSON warning on stderr with --json:\n${j.stderr}`);
      const json = JSON.parse(line) as { plate: string; msg: string; added: string[] };
      assert.deepEqual([json.plate, json.msg, json.added], [plate.plateId, rec?.msg, [added]]);
    });
  });
}
