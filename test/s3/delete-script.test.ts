// The old runbook's last step, as users run it: `parallel -a delete_s3.sh` with the aws CLI. The
// collected script must delete exactly the verified keys: nothing added or changed after the
// archive, nothing of a sibling plate, whatever characters the keys hold.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { getBytes, keysUnder } from '../helpers/s3.js';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import {
  plateObjects,
  SIBLINGS,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

/** The aws CLI and GNU parallel on PATH (scripts/test-tools-install.sh installs parallel). */
function tool(name: string): string {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const path = r.stdout.trim();
  assert.ok(
    r.status === 0 && path !== '',
    `${name} is not on PATH: run bash scripts/test-tools-install.sh`,
  );
  return path;
}

/** Runs a command without blocking the event loop (s3rver answers from this very process). */
function runAsync(
  cmd: string,
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

for (const name of testServerNames()) {
  describe(`the collected delete_s3.sh run with GNU parallel and the aws CLI against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-script-');

    test('deletes exactly the verified keys; added, changed and sibling keys survive', async () => {
      const aws = tool('aws');
      const parallel = tool('parallel');
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const p1: FixturePlate = { plateId: '2058', plateIdFull: '2058' };
      const p2: FixturePlate = { plateId: 'BR1', plateIdFull: 'BR1 Measurement 1' };
      const truth = new Map<string, Buffer>();
      const [images1] = sourcePrefixes(p1) as [string];
      const [images2] = sourcePrefixes(p2) as [string];
      const awkward = new Map<string, Buffer>([
        [`${images1}it's a "file" $(touch PWNED) \`id\`.tif`, Buffer.from('quotes\n')],
        [`${images2}semi;colon & amp * ${'$'}{HOME}.tif`, Buffer.from('shell\n')],
        [`${images2}ünïcødé 顕微鏡 µm.tif`, Buffer.from('utf-8\n')],
      ]);
      for (const p of [p1, p2, ...SIBLINGS]) {
        const objs = plateObjects(p);
        if (p === p1 || p === p2)
          for (const [k, v] of awkward) if (k.startsWith(sourcePrefixes(p)[0]!)) objs.set(k, v);
        for (const [k, v] of objs) truth.set(k, v);
        await uploadAll(suite.client, live, objs);
      }
      const dir = await mkdtemp(join(suite.work, 'case-'));
      const csv = await writePlatesCsv([p1, p2], dir);
      const run = (cmd: string, extra: string[] = []) =>
        runCli([cmd, ...plateArgs({ csv, live, cold }), ...extra], serverEnv(suite.server));
      const a = await run('archive', ['--tmpdir', dir]);
      assert.equal(a.code, 0, a.stdout + a.stderr);

      // After the archive: one key added, one overwritten with other bytes of the same size.
      const added = `${images1}added-after-archive.tif`;
      const changed = `${images2}r01c01f01p01-ch1sk1fk1fl1.tiff`;
      const changedBytes = Buffer.alloc(truth.get(changed)!.length, 7);
      await suite.client.send(new PutObjectCommand({ Bucket: live, Key: added, Body: 'new' }));
      await suite.client.send(
        new PutObjectCommand({ Bucket: live, Key: changed, Body: changedBytes }),
      );
      const v = await run('verify');
      assert.equal(v.code, 0, v.stdout + v.stderr);
      const out = join(dir, 'delete_s3.sh');
      const c = await run('collect-deletes', ['--out', out]);
      assert.equal(c.code, 0, c.stdout + c.stderr);

      // The aws CLI reaches the test server through a wrapper: a script line cannot name an
      // endpoint, and older CLIs read no AWS_ENDPOINT_URL.
      const bin = join(dir, 'bin');
      await mkdir(bin);
      await writeFile(
        join(bin, 'aws'),
        `#!/bin/sh\nexec '${aws}' --endpoint-url '${suite.server.endpoint}' "$@"\n`,
      );
      await chmod(join(bin, 'aws'), 0o755);
      const r = await runAsync(parallel, ['--will-cite', '-a', out], {
        cwd: dir,
        env: {
          PATH: `${bin}:${process.env.PATH}`,
          HOME: process.env.HOME,
          AWS_ACCESS_KEY_ID: suite.server.accessKeyId,
          AWS_SECRET_ACCESS_KEY: suite.server.secretAccessKey,
          AWS_DEFAULT_REGION: suite.server.region,
          AWS_CONFIG_FILE: '/nonexistent',
          AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
        },
      });
      // delete-objects exits 0 even when keys fail; it prints them under "Errors": none here.
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout, /"Errors"/, r.stdout);

      const left = new Set(
        (
          await Promise.all(
            [p1, p2, ...SIBLINGS].flatMap((p) =>
              sourcePrefixes(p).map((pre) => keysUnder(suite.client, live, pre)),
            ),
          )
        ).flat(),
      );
      const siblingKeys = [...truth.keys()].filter((k) =>
        SIBLINGS.some((s) => sourcePrefixes(s).some((pre) => k.startsWith(pre))),
      );
      assert.deepEqual([...left].sort(), [added, changed, ...siblingKeys].sort());
      assert.deepEqual(await getBytes(suite.client, live, changed), changedBytes);
      for (const k of siblingKeys)
        assert.deepEqual(await getBytes(suite.client, live, k), truth.get(k));
      assert.ok(!(await readdir(dir)).includes('PWNED'), 'no command ran from a key');
    });
  });
}
