import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getBytes, keysUnder } from '../helpers/s3.js';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import {
  BATCH,
  md5hex,
  PROJECT,
  SIBLINGS,
  sourcePrefixes,
  uploadAll,
  uploadPlates,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { writeOldArchive } from '../helpers/old-archive.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

const tag = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;
const coldKey = (p: FixturePlate, name: string) =>
  `imaging_analysis/${PROJECT}/plates/${tag(p)}_${name}`;

for (const name of testServerNames()) {
  describe(`verify, collect-deletes, delete against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-vd-test-');

    /** Fresh buckets with the given plates (and the 2058 siblings) uploaded. */
    async function setup(plates: FixturePlate[]) {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const truth = await uploadPlates(suite.client, live, plates);
      const dir = await mkdtemp(join(suite.work, 'case-'));
      const csv = await writePlatesCsv(plates, dir);
      const run = (cmd: string, extra: string[] = []) =>
        runCli(
          [
            cmd,
            ...plateArgs({ csv: csv, live: live, cold: cold }),
            ...(cmd === 'archive' ? ['--tmpdir', dir] : []),
            ...extra,
          ],
          serverEnv(suite.server),
        );
      return { live, cold, truth, dir, csv, run };
    }

    test('archive → verify → verify --deep → collect-deletes → delete removes exactly the archived keys', async () => {
      const p1: FixturePlate = { plateId: '2058', plateIdFull: '2058' };
      const p2: FixturePlate = { plateId: 'BR1', plateIdFull: 'BR1 Measurement 1' };
      const { live, truth, dir, run } = await setup([p1, p2]);
      assert.equal((await run('archive')).code, 0);

      // After the archive: one key added, one overwritten with other bytes of the same size.
      const [images1] = sourcePrefixes(p1) as [string];
      const added = `${images1}added-after-archive.tif`;
      const overwritten = `${images1}r01c01f01p01-ch1sk1fk1fl1.tiff`;
      await suite.client.send(new PutObjectCommand({ Bucket: live, Key: added, Body: 'new' }));
      const size = truth.get(overwritten)!.length;
      await suite.client.send(
        new PutObjectCommand({ Bucket: live, Key: overwritten, Body: Buffer.alloc(size, 7) }),
      );

      const v = await run('verify');
      assert.equal(v.code, 0, v.stderr + v.stdout);
      assert.ok(v.stderr.includes(added) || v.stdout.includes(added), 'verify names the added key');
      assert.ok(
        v.stderr.includes(overwritten) || v.stdout.includes(overwritten),
        'verify names the overwritten key',
      );
      const deep = await run('verify', ['--deep', '--json']);
      assert.equal(deep.code, 0, deep.stderr + deep.stdout);
      const lines = deep.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.deepEqual(
        lines.filter((l) => l.type === 'plate').map((l) => l.status),
        ['verified', 'verified'],
      );

      const out = join(dir, 'delete_s3.sh');
      const c = await run('collect-deletes', ['--out', out]);
      assert.equal(c.code, 0, c.stderr);
      const script = await readFile(out, 'utf8');
      // One delete-objects line per plate (each has fewer than 1000 keys).
      assert.equal(script.trim().split('\n').length, 2);
      const plan = (await readFile(join(dir, 'delete_s3.plan.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map(
          (l) =>
            JSON.parse(l) as {
              key: string;
              size: number;
              etag: string;
              plate: string;
              bucket: string;
            },
        );
      const archivedKeys = [...truth.keys()].filter(
        (k) =>
          [...sourcePrefixes(p1), ...sourcePrefixes(p2)].some((pre) => k.startsWith(pre)) &&
          !k.endsWith('/'),
      );
      assert.deepEqual(
        plan.map((l) => l.key).sort(),
        archivedKeys.filter((k) => k !== overwritten).sort(),
      );
      for (const l of plan) assert.equal(l.etag, md5hex(truth.get(l.key)!));

      const d = await run('delete', ['--yes']);
      assert.equal(d.code, 0, d.stderr + d.stdout);
      const left = [
        ...(await keysUnder(suite.client, live, `projects/${PROJECT}/${BATCH}/`)),
        ...(await keysUnder(suite.client, live, `projects/${PROJECT}/workspace/analysis/`)),
        ...(await keysUnder(suite.client, live, `projects/${PROJECT}/workspace/backend/`)),
      ];
      const siblingKeys = [...truth.keys()].filter((k) =>
        SIBLINGS.some((s) => sourcePrefixes(s).some((pre) => k.startsWith(pre))),
      );
      assert.deepEqual(left.sort(), [added, overwritten, ...siblingKeys].sort());
      // Re-running finds nothing left to delete and fails nothing.
      const again = await run('delete', ['--yes']);
      assert.equal(again.code, 0, again.stderr);
    });

    test('an altered tarball fails verify --deep and delete refuses that plate only', async () => {
      const bad: FixturePlate = { plateId: '2058', plateIdFull: '2058' };
      const good: FixturePlate = { plateId: 'G1', plateIdFull: 'G1' };
      const { live, cold, truth, run } = await setup([bad, good]);
      assert.equal((await run('archive')).code, 0);
      assert.equal((await run('verify')).code, 0);
      // One byte altered, and its .etag made to agree, so only reading the bytes can tell.
      const key = coldKey(bad, 'images_illum_analysis.tar.gz');
      const data = await getBytes(suite.client, cold, key);
      const mid = Math.floor(data.length / 2);
      data[mid] = data[mid]! ^ 0x01;
      await suite.client.send(new PutObjectCommand({ Bucket: cold, Key: key, Body: data }));
      const head = await suite.client.send(new HeadObjectCommand({ Bucket: cold, Key: key }));
      await suite.client.send(
        new PutObjectCommand({
          Bucket: cold,
          Key: coldKey(bad, 'images_illum_analysis.etag'),
          Body: `${head.ETag!.replace(/"/g, '')}\n`,
        }),
      );
      const v = await run('verify', ['--deep']);
      assert.equal(v.code, 3, v.stderr + v.stdout);
      assert.match(v.stdout, /2058\s+mismatch/);
      assert.match(v.stdout, /G1\s+verified/);

      const d = await run('delete', ['--yes']);
      assert.equal(d.code, 1, d.stderr + d.stdout);
      assert.match(d.stdout, /2058\s+failed.*not verified/);
      assert.match(d.stdout, /G1\s+deleted/);
      for (const pre of sourcePrefixes(bad)) {
        const expected = [...truth.keys()].filter((k) => k.startsWith(pre)).sort();
        assert.deepEqual(
          await keysUnder(suite.client, live, pre),
          expected,
          `nothing of 2058 deleted under ${pre}`,
        );
      }
      for (const pre of sourcePrefixes(good))
        assert.deepEqual(await keysUnder(suite.client, live, pre), []);
    });

    test('a plan naming a key outside its plate is refused; prefix siblings are never deleted', async () => {
      const p: FixturePlate = { plateId: '2058', plateIdFull: '2058' };
      const { live, truth, dir, run } = await setup([p]);
      assert.equal((await run('archive')).code, 0);
      assert.equal((await run('verify')).code, 0);
      const out = join(dir, 'delete_s3.sh');
      assert.equal((await run('collect-deletes', ['--out', out])).code, 0);
      const planFile = join(dir, 'delete_s3.plan.jsonl');
      const sibling = [...truth.keys()].find((k) =>
        k.startsWith(sourcePrefixes(SIBLINGS[0]!)[0]!),
      )!;
      const tampered = `${await readFile(planFile, 'utf8')}${JSON.stringify({ plate: '2058', bucket: live, key: sibling, size: truth.get(sibling)!.length, etag: md5hex(truth.get(sibling)!) })}\n`;
      await writeFile(planFile, tampered);
      const d = await run('delete', ['--yes', '--plan', planFile]);
      assert.equal(d.code, 1);
      assert.match(d.stdout, /2058\s+failed.*outside the plate's four sources/);
      const before = await keysUnder(suite.client, live, 'projects/');
      assert.ok(before.includes(sibling));
      for (const pre of sourcePrefixes(p))
        assert.ok((await keysUnder(suite.client, live, pre)).length > 0, 'plate 2058 untouched');

      // A plan line without the archived ETag (a dry run's --list) would delete whatever bytes
      // the key holds by then: refused as bad input, even with --force-unverified.
      const noEtag = join(dir, 'no-etag.jsonl');
      const [first] = (await readFile(planFile, 'utf8')).split('\n');
      const line = JSON.parse(first!) as Record<string, unknown>;
      delete line.etag;
      await writeFile(noEtag, `${JSON.stringify(line)}\n`);
      const n = await run('delete', ['--yes', '--force-unverified', '--plan', noEtag]);
      assert.equal(n.code, 2, n.stdout + n.stderr);
      assert.equal(
        n.stderr,
        `imgbackup: ${noEtag}:1: not a plan line (needs plate, bucket, key, size, etag (and versionId, if any, a string); make the plan with collect-deletes)\n`,
      );

      // A record altered to name a sibling's key: collect-deletes writes no script from it
      // (the aws CLI that runs the script has no guard of its own).
      const recordKey = `projects/${PROJECT}/workspace/backup/${tag(p)}_verified.json`;
      const record = (await getBytes(suite.client, live, recordKey)).toString('utf8');
      const put = (body: string) =>
        suite.client.send(new PutObjectCommand({ Bucket: live, Key: recordKey, Body: body }));
      const parsed = JSON.parse(record) as { objects: unknown[]; time: string };
      await put(
        JSON.stringify({
          ...parsed,
          objects: [
            ...parsed.objects,
            { key: sibling, size: truth.get(sibling)!.length, etag: md5hex(truth.get(sibling)!) },
          ],
        }),
      );
      const out2 = join(dir, 'tampered', 'delete_s3.sh');
      await mkdir(join(dir, 'tampered'));
      const c = await run('collect-deletes', ['--out', out2]);
      assert.equal(c.code, 1, c.stdout + c.stderr);
      assert.match(c.stdout, /2058\s+failed.*outside the plate's four sources/);
      assert.deepEqual(await readdir(join(dir, 'tampered')), [], 'no script, no plan');

      // A record whose time is not a time: no output could ever look newer than it.
      await put(JSON.stringify({ ...parsed, time: 'yesterday' }));
      const t = await run('delete', ['--yes']);
      assert.equal(t.code, 1, t.stdout + t.stderr);
      assert.match(t.stdout, /2058\s+failed.*has no valid time \("yesterday"\)/);
      for (const pre of sourcePrefixes(p))
        assert.ok((await keysUnder(suite.client, live, pre)).length > 0, 'plate 2058 untouched');
      await put(record);

      // The untampered run deletes 2058 and none of 20586 / 2058-old.
      assert.equal((await run('delete', ['--yes'])).code, 0);
      for (const s of SIBLINGS) {
        for (const pre of sourcePrefixes(s)) {
          const expected = [...truth.keys()].filter((k) => k.startsWith(pre)).sort();
          assert.deepEqual(await keysUnder(suite.client, live, pre), expected);
        }
      }
    });

    test('the collected delete_s3.sh passes each key whole, whatever the plate id holds', async () => {
      const evil: FixturePlate = {
        plateId: `q"$(touch PWNED)'x`,
        plateIdFull: `q"$(touch PWNED)'x \`id\``,
      };
      const { live, dir, truth, run } = await setup([evil]);
      assert.equal((await run('archive')).code, 0);
      assert.equal((await run('verify')).code, 0);
      const out = join(dir, 'delete_s3.sh');
      assert.equal((await run('collect-deletes', ['--out', out])).code, 0);
      const bin = join(dir, 'bin');
      await mkdir(bin);
      const argvFile = join(dir, 'argv');
      await writeFile(
        join(bin, 'aws'),
        `#!/bin/sh\nfor a in "$@"; do printf '%s\\0' "$a"; done >> "${argvFile}"\nprintf '\\n' >> "${argvFile}"\n`,
      );
      await chmod(join(bin, 'aws'), 0o755);
      execFileSync('bash', [out], { cwd: dir, env: { PATH: `${bin}:/usr/bin:/bin` } });
      const calls = (await readFile(argvFile, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => l.split('\0').filter(Boolean));
      assert.equal(calls.length, 1);
      assert.deepEqual(calls[0]!.slice(0, 5), [
        's3api',
        'delete-objects',
        '--bucket',
        live,
        '--delete',
      ]);
      const named = (JSON.parse(calls[0]![5]!) as { Objects: { Key: string; ETag: string }[] })
        .Objects;
      const expected = [...truth]
        .filter(([k]) => sourcePrefixes(evil).some((pre) => k.startsWith(pre)) && !k.endsWith('/'))
        .map(([k, v]) => ({ Key: k, ETag: `"${md5hex(v)}"` }));
      assert.deepEqual(
        [...named].sort((a, b) => a.Key.localeCompare(b.Key)),
        expected.sort((a, b) => a.Key.localeCompare(b.Key)),
      );
      assert.ok(!(await readdir(dir)).includes('PWNED'), 'no command ran from the plate id');
    });

    test('an archive made by the old bash script verifies (listings cut at spaces)', async () => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const p: FixturePlate = { plateId: 'OLD1', plateIdFull: 'OLD1 Measurement 1' };
      const objs = new Map<string, Buffer>([
        [
          `projects/${PROJECT}/${BATCH}/images/${p.plateIdFull}/r01 c01.tiff`,
          Buffer.from('image one\n'),
        ],
        [
          `projects/${PROJECT}/${BATCH}/images/${p.plateIdFull}/r02.tiff`,
          Buffer.from('image two!\n'),
        ],
        [`projects/${PROJECT}/${BATCH}/illum/${p.plateId}/illum.npy`, Buffer.from('illum')],
        [
          `projects/${PROJECT}/workspace/analysis/${BATCH}/${p.plateId}/Cells.csv`,
          Buffer.from('a,b\n'),
        ],
        [
          `projects/${PROJECT}/workspace/backend/${BATCH}/${p.plateId}/${p.plateId}.sqlite`,
          Buffer.from('sqlite'),
        ],
      ]);
      await uploadAll(suite.client, live, objs);
      await writeOldArchive(suite.client, {
        live,
        cold,
        work: suite.work,
        plate: p,
        objects: objs,
      });
      const dir = await mkdtemp(join(suite.work, 'old-'));
      const csv = await writePlatesCsv([p], dir);
      const args = [...plateArgs({ csv: csv, live: live, cold: cold })];
      const v = await runCli(['verify', ...args], serverEnv(suite.server));
      assert.equal(v.code, 0, v.stderr + v.stdout);
      const deep = await runCli(['verify', '--deep', ...args], serverEnv(suite.server));
      assert.equal(deep.code, 0, deep.stderr + deep.stdout);
      assert.match(deep.stdout, /OLD1\s+verified/);
      // Deleting it removes exactly its five keys, found by their whole names.
      const d = await runCli(['delete', '--yes', ...args], serverEnv(suite.server));
      assert.equal(d.code, 0, d.stderr + d.stdout);
      for (const k of objs.keys()) {
        const h = await suite.client
          .send(new HeadObjectCommand({ Bucket: live, Key: k }))
          .catch(() => undefined);
        assert.equal(h?.ETag, undefined, `${k} deleted\n${d.stdout}${d.stderr}`);
      }
    });

    test('an old-script archive: a file written again (same size) while it ran is never deleted', async () => {
      // The old script uploaded its listings last, hours after `aws s3 ls` and the download:
      // a file written again meanwhile is older than the listings, yet not what the tarball
      // holds. Only its time in the untrimmed listing tells. With and without a space in the
      // plate's paths (the old script's listings differ from imgbackup's only with one).
      for (const p of [
        { plateId: 'OLD3', plateIdFull: 'OLD3' },
        { plateId: 'OLD4', plateIdFull: 'OLD4 Measurement 1' },
      ]) {
        const live = await suite.server.newBucket('live');
        const cold = await suite.server.newBucket('cold');
        const image = `projects/${PROJECT}/${BATCH}/images/${p.plateIdFull}/r01.tiff`;
        const objs = new Map<string, Buffer>([
          [image, Buffer.from('image one\n')],
          [`projects/${PROJECT}/${BATCH}/images/${p.plateIdFull}/r02.tiff`, Buffer.from('two\n')],
          [`projects/${PROJECT}/${BATCH}/illum/${p.plateId}/illum.npy`, Buffer.from('illum')],
          [
            `projects/${PROJECT}/workspace/backend/${BATCH}/${p.plateId}/${p.plateId}.sqlite`,
            Buffer.from('sqlite'),
          ],
        ]);
        await uploadAll(suite.client, live, objs);
        const rewritten = Buffer.from('IMAGE ONE\n');
        await writeOldArchive(suite.client, {
          live,
          cold,
          work: suite.work,
          plate: p,
          objects: objs,
          rewrites: new Map([[image, rewritten]]),
        });
        const dir = await mkdtemp(join(suite.work, 'old-'));
        const args = plateArgs({ csv: await writePlatesCsv([p], dir), live, cold });
        const v = await runCli(['verify', ...args], serverEnv(suite.server));
        assert.equal(v.code, 0, v.stderr + v.stdout);
        assert.ok(
          v.stdout.includes(`changed since the archive (never deleted): ${JSON.stringify(image)}`),
          v.stdout,
        );
        const d = await runCli(['delete', '--yes', ...args], serverEnv(suite.server));
        assert.equal(d.code, 0, d.stderr + d.stdout);
        assert.match(d.stdout, new RegExp(`${p.plateId}\\s+deleted\\s+3\\b`));
        assert.deepEqual(await getBytes(suite.client, live, image), rewritten, p.plateIdFull);
        for (const k of objs.keys()) {
          if (k === image) continue;
          const h = await suite.client
            .send(new HeadObjectCommand({ Bucket: live, Key: k }))
            .catch(() => undefined);
          assert.equal(h, undefined, `${k} deleted`);
        }
      }
    });
  });
}
