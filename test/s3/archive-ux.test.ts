// archive --dry-run, and the progress display under a pseudo-terminal.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { BIN, runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import { snapshot } from '../helpers/s3.js';
import {
  BATCH,
  BIG_PLATE,
  bigPlateObjects,
  PLATE_B,
  plateObjects,
  PROJECT,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

const tag = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;

const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs the CLI under a pseudo-terminal (util-linux script): stdout and stderr both are the TTY. */
function runInPty(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; output: string }> {
  const cmd = [process.execPath, BIN, ...args].map(sh).join(' ');
  return new Promise((resolve, reject) => {
    execFile(
      'script',
      ['-qfec', cmd, '/dev/null'],
      {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          TERM: 'xterm',
          AWS_CONFIG_FILE: '/nonexistent',
          AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
          ...env,
        },
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout) => {
        const code = error ? (error as { code?: number }).code : 0;
        if (typeof code !== 'number') return reject(error);
        resolve({ code, output: stdout });
      },
    );
  });
}

for (const name of testServerNames()) {
  describe(`archive --dry-run and progress against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-ux-test-');
    let live: string;
    let cold: string;
    let bBytes = 0;
    let bFiles = 0;

    before(async () => {
      live = await suite.server.newBucket('live');
      cold = await suite.server.newBucket('cold');
      const objs = plateObjects(PLATE_B);
      await uploadAll(suite.client, live, objs);
      for (const [k, v] of objs) {
        if (k.endsWith('/')) continue;
        bFiles += 1;
        bBytes += v.length;
      }
      await uploadAll(suite.client, live, bigPlateObjects());
    });

    const args = (csv: string, tmp: string, extra: string[] = []) => [
      'archive',
      ...plateArgs({ csv: csv, live: live, cold: cold }),
      '--tmpdir',
      tmp,
      ...extra,
    ];

    test('--dry-run lists files, bytes and tarball keys, and writes nothing', async () => {
      const csv = await writePlatesCsv([PLATE_B], await mkdtemp(join(suite.work, 'dry-')));
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const snap = [await snapshot(suite.client, live), await snapshot(suite.client, cold)];
      const r = await runCli(args(csv, tmp, ['--dry-run']), serverEnv(suite.server));
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, new RegExp(`2058\\s+planned\\s+${bFiles}\\s`));
      const backendBytes = [...plateObjects(PLATE_B)]
        .filter(([k]) => k.startsWith(sourcePrefixes(PLATE_B)[3]!))
        .reduce((n, [, v]) => n + v.length, 0);
      for (const [t, files] of [
        ['images_illum_analysis', bFiles - 1],
        ['backend', 1],
      ] as const) {
        const key = `imaging_analysis/${PROJECT}/plates/${tag(PLATE_B)}_${t}.tar.gz`;
        assert.ok(
          r.stdout.includes(`would write s3://${cold}/${key} (${files} files, `),
          `${key} with ${files} files in:\n${r.stdout}`,
        );
      }
      const j = await runCli(args(csv, tmp, ['--dry-run', '--json']), serverEnv(suite.server));
      assert.equal(j.code, 0, j.stderr);
      const plate = JSON.parse(j.stdout.split('\n')[0]!) as {
        status: string;
        files: number;
        bytesIn: number;
        details: { tarballs: { key: string; files: number; bytes: number }[] };
      };
      assert.equal(plate.status, 'planned');
      assert.equal(plate.files, bFiles);
      assert.equal(plate.bytesIn, bBytes);
      assert.deepEqual(
        plate.details.tarballs.map((t) => [t.key.split('_').at(-1), t.files, t.bytes]),
        [
          ['analysis.tar.gz', bFiles - 1, bBytes - backendBytes],
          ['backend.tar.gz', 1, backendBytes],
        ],
      );
      assert.deepEqual(
        [await snapshot(suite.client, live), await snapshot(suite.client, cold)],
        snap,
      );
      assert.deepEqual(await readdir(tmp), []);
    });

    test('on a terminal: a live progress line per plate, ended cleanly before the summary', async () => {
      const csv = await writePlatesCsv([BIG_PLATE], await mkdtemp(join(suite.work, 'pty-')));
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const r = await runInPty(args(csv, tmp, ['--max-procs', '1']), serverEnv(suite.server));
      assert.equal(r.code, 0, r.output);
      const out = r.output.replace(/\r/g, '');
      assert.match(
        out,
        /big-plate: [\d.]+ [kMG]?B \/ 62\.9 MB \d+% [\d.]+ MB\/s ETA \d+:\d\d/,
        'a progress line for the plate',
      );
      assert.match(out, /plates: 1\/1 done, 0 running\n/, 'the overall line, final state');
      // the display ends (redraws stop) before the summary table, which ends the output
      const table = out.lastIndexOf('plate      status');
      assert.ok(table > out.lastIndexOf('\x1b['), 'no redraw after the summary starts');
      assert.match(out.slice(table), /big-plate\s+archived\s+2\s/);
      assert.match(out, /1 plate\(s\): 1 archived\n$/);
      assert.deepEqual(await readdir(tmp), []);
    });

    test('--quiet shows no progress on a terminal', async () => {
      const csv = await writePlatesCsv([PLATE_B], await mkdtemp(join(suite.work, 'quiet-')));
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const r = await runInPty(args(csv, tmp, ['--quiet']), serverEnv(suite.server));
      assert.equal(r.code, 0, r.output);
      assert.doesNotMatch(r.output, /MB\/s|plates: /);
      assert.ok(!r.output.includes('\x1b['), 'no cursor movement');
      assert.match(r.output.replace(/\r/g, ''), /2058\s+archived/);
    });
  });
}
