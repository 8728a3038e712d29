// What a user sees on stderr: the zlib-fallback warning only where compression happens, once;
// log warnings as human lines (JSON only in --log-dir files and with --json); delete --dry-run
// as a summary per plate, with every key in --list FILE.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { plateArgs, runCli, serverEnv } from '../helpers/cli.js';
import { snapshot } from '../helpers/s3.js';
import {
  PLATE_A,
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

    test('delete --dry-run: a summary per plate; --list FILE has every key, bucket and size', async () => {
      const env = serverEnv(suite.server);
      const dir = await mkdtemp(join(suite.work, 'dry-'));
      const [dLive, dCold] = [
        await suite.server.newBucket('live'),
        await suite.server.newBucket('cold'),
      ];
      const truth = new Map<string, Buffer>();
      for (const p of [PLATE_A, PLATE_B]) {
        const objs = plateObjects(p, { manyFiles: 30, bigFile: 1000 });
        await uploadAll(suite.client, dLive, objs);
        for (const [k, v] of objs) if (!k.endsWith('/')) truth.set(`${p.plateId}\t${k}`, v);
      }
      const csv = await writePlatesCsv([PLATE_A, PLATE_B], dir);
      const flags = plateArgs({ csv, live: dLive, cold: dCold });
      for (const args of [['archive', '--tmpdir', dir], ['verify']]) {
        const r = await runCli([args[0]!, ...flags, ...args.slice(1)], env);
        assert.equal(r.code, 0, r.stderr);
      }
      const before = await snapshot(suite.client, dLive);
      const list = join(dir, 'keys.jsonl');
      const r = await runCli(['delete', ...flags, '--dry-run', '--list', list], env);
      assert.equal(r.code, 0, r.stderr);
      for (const p of [PLATE_A, PLATE_B]) {
        const mine = [...truth].filter(([k]) => k.startsWith(`${p.plateId}\t`));
        const bytes = mine.reduce((n, [, v]) => n + v.length, 0);
        const kb = bytes < 1000 ? `${bytes} B` : `${(bytes / 1000).toFixed(1)} kB`;
        const head = `${p.plateId}: would delete ${mine.length} keys (${kb}) from s3://${dLive}, e.g.:`;
        const at = r.stdout.split('\n').indexOf(head);
        assert.ok(at >= 0, `${head}\nin:\n${r.stdout}`);
        const lines = r.stdout.split('\n').slice(at + 1, at + 5);
        for (const l of lines.slice(0, 3)) {
          const m = /^ {2}s3:\/\/([^/]+)\/(.+) \((\d+) B\)$/.exec(l);
          assert.ok(m, l);
          assert.equal(m[1], dLive);
          assert.equal(String(truth.get(`${p.plateId}\t${m[2]}`)?.length), m[3], l);
        }
        assert.equal(lines[3], `  and ${mine.length - 3} more (all in ${list})`);
      }
      assert.ok(r.stdout.split('\n').length < 30, `a summary, not every key:\n${r.stdout}`);
      const listed = (await readFile(list, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { plate: string; bucket: string; key: string; size: number });
      assert.deepEqual(
        listed.map((l) => [`${l.plate}\t${l.key}`, l.bucket, l.size]).sort(),
        [...truth].map(([k, v]) => [k, dLive, v.length]).sort(),
      );
      assert.deepEqual(await readdir(dir).then((d) => d.filter((f) => f.includes('partial'))), []);
      const plain = await runCli(['delete', ...flags, '--dry-run'], env);
      assert.equal(plain.code, 0, plain.stderr);
      assert.match(plain.stdout, /^ {2}and \d+ more \(--list FILE lists every key\)$/m);
      const noDry = await runCli(['delete', ...flags, '--yes', '--list', list], env);
      assert.equal(noDry.code, 2, noDry.stderr);
      assert.match(noDry.stderr, /^imgbackup: --list FILE goes with --dry-run$/m);
      const noDir = await runCli(
        ['delete', ...flags, '--dry-run', '--list', join(dir, 'no', 'x')],
        env,
      );
      assert.equal(noDir.code, 2, noDir.stderr);
      assert.match(noDir.stderr, /--list .*: cannot write in .* \(does it exist\?\)/);
      assert.deepEqual(await snapshot(suite.client, dLive), before, 'nothing deleted');
    });
  });
}
