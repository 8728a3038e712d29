// One test per documented exit code (README "Exit codes"), each against the built CLI.
import assert from 'node:assert/strict';
import { mkdtemp, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import {
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import {
  BATCH,
  BIG_PLATE,
  bigPlateObjects,
  PLATE_B,
  plateObjects,
  PROJECT,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { keysUnder } from '../helpers/s3.js';
import { useServer } from '../helpers/suite.js';

const tag = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;
const coldKey = (p: FixturePlate, name: string) =>
  `imaging_analysis/${PROJECT}/plates/${tag(p)}_${name}`;

/** A plate's row of `--log-dir`'s archive.joblog, split at its tabs. */
async function jobLogRow(logDir: string, p: FixturePlate): Promise<string[] | undefined> {
  return (await readFile(join(logDir, 'archive.joblog'), 'utf8'))
    .split('\n')
    .map((l) => l.split('\t'))
    .find((cols) => cols[8] === p.plateId);
}

for (const name of testServerNames()) {
  describe(`exit codes against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-exit-test-');
    let live: string;
    let cold: string;

    before(async () => {
      live = await suite.server.newBucket('live');
      cold = await suite.server.newBucket('cold');
      await uploadAll(suite.client, live, plateObjects(PLATE_B));
      await uploadAll(suite.client, live, bigPlateObjects());
    });

    const args = (cmd: string, csv: string, extra: string[] = []) => [
      cmd,
      ...plateArgs({ csv: csv, live: live, cold: cold }),
      ...extra,
    ];

    test('0: archive of a good plate, then verify of it', async () => {
      const csv = await writePlatesCsv([PLATE_B], await mkdtemp(join(suite.work, 'ok-')));
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const r = await runCli(args('archive', csv, ['--tmpdir', tmp]), serverEnv(suite.server));
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /2058\s+archived/);
      const v = await runCli(args('verify', csv), serverEnv(suite.server));
      assert.equal(v.code, 0, v.stderr + v.stdout);
      assert.match(v.stdout, /2058\s+verified/);
    });

    test('1: a plate failed (an empty plate)', async () => {
      const csv = await writePlatesCsv(
        [{ plateId: 'empty-plate', plateIdFull: 'empty-plate' }],
        await mkdtemp(join(suite.work, 'empty-')),
      );
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const r = await runCli(args('archive', csv, ['--tmpdir', tmp]), serverEnv(suite.server));
      assert.equal(r.code, 1, r.stderr + r.stdout);
      assert.match(r.stdout, /empty-plate\s+failed.*no objects under its four sources/);
    });

    test('2: an unknown flag', async () => {
      const csv = await writePlatesCsv([PLATE_B], await mkdtemp(join(suite.work, 'flag-')));
      const r = await runCli(args('archive', csv, ['--no-such-flag']), serverEnv(suite.server));
      assert.equal(r.code, 2, r.stderr + r.stdout);
      assert.match(r.stderr, /unknown option '--no-such-flag'/);
      assert.equal(r.stdout, '');
    });

    test('2: a gzip engine asked for a level it does not have: one line, nothing written', async () => {
      const csv = await writePlatesCsv([PLATE_B], await mkdtemp(join(suite.work, 'engine-')));
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const r = await runCli(
        args('archive', csv, [
          '--tmpdir',
          tmp,
          '--gzip-engine',
          'isal',
          '--compression-level',
          '6',
        ]),
        serverEnv(suite.server),
      );
      assert.equal(r.code, 2, r.stderr + r.stdout);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /the isal gzip engine takes levels 1-3, not 6/);
      assert.equal(r.stdout, '');
      assert.deepEqual(await readdir(tmp), []);
    });

    test('2: a bad plates CSV', async () => {
      const csv = join(await mkdtemp(join(suite.work, 'badcsv-')), 'plates.csv');
      await writeFile(csv, 'plate_id,wrong_header\n2058,2058\n');
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const r = await runCli(args('archive', csv, ['--tmpdir', tmp]), serverEnv(suite.server));
      assert.equal(r.code, 2, r.stderr + r.stdout);
      assert.match(r.stderr, /plates\.csv/);
      assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
      assert.equal(r.stdout, '');
    });

    test('2: a missing bucket is one line naming it', async () => {
      const csv = await writePlatesCsv([PLATE_B], await mkdtemp(join(suite.work, 'nobucket-')));
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const missing = `${live}-missing`;
      const a = args('archive', csv, ['--tmpdir', tmp]);
      a[a.indexOf('--bucket') + 1] = missing;
      const r = await runCli(a, serverEnv(suite.server));
      assert.equal(r.code, 2, r.stderr + r.stdout);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(lines[0]!.includes(`s3://${missing}`), lines[0]);
      assert.match(lines[0]!, /does not exist/);
    });

    test('3: verify --deep finds a tarball whose bytes disagree with its .md5', async () => {
      // test 0 archived plate 2058. (A changed .etag alone is not a mismatch: the ETag may have
      // changed by a copy in place; verify judges it by X.md5 or asks for --deep.)
      // Its metadata (the lease generation that wrote it) is kept, as bit rot would keep it.
      const was = await suite.client.send(
        new HeadObjectCommand({ Bucket: cold, Key: coldKey(PLATE_B, 'backend.md5') }),
      );
      await suite.client.send(
        new PutObjectCommand({
          Bucket: cold,
          Key: coldKey(PLATE_B, 'backend.md5'),
          Body: `0123456789abcdef0123456789abcdef  ${tag(PLATE_B)}_backend.tar.gz\n`,
          ...(was.Metadata ? { Metadata: was.Metadata } : {}),
        }),
      );
      const csv = await writePlatesCsv([PLATE_B], await mkdtemp(join(suite.work, 'mismatch-')));
      const r = await runCli(args('verify', csv, ['--deep']), serverEnv(suite.server));
      assert.equal(r.code, 3, r.stderr + r.stdout);
      assert.match(r.stdout, /2058\s+mismatch/);
    });

    test('141: stdout closed mid-run (| head) stops the archive cleanly, in one line', async () => {
      // 2058 is small: its JSON line, the run's first write to stdout, comes while big-plate
      // (--max-procs 2) is still being archived, which must then stop as for Ctrl-C.
      const csv = await writePlatesCsv(
        [PLATE_B, BIG_PLATE],
        await mkdtemp(join(suite.work, 'pipe-')),
      );
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const logs = await mkdtemp(join(suite.work, 'logs-'));
      const r = await runCli(
        args('archive', csv, ['--tmpdir', tmp, '--json', '--max-procs', '2', '--log-dir', logs]),
        serverEnv(suite.server),
        { stdout: 'closed' },
      );
      assert.equal(r.signal, null, 'the CLI exits by itself');
      assert.equal(r.code, 141, r.stderr);
      assert.match(
        r.stderr,
        /^imgbackup: cannot write stdout \(EPIPE\): no new plates; aborting work in flight and cleaning up$/m,
      );
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
      // big-plate was started (it has a row), then stopped (GNU parallel's Signal column).
      const row = await jobLogRow(logs, BIG_PLATE);
      assert.deepEqual(row?.slice(6), ['0', '13', BIG_PLATE.plateId], 'stopped by SIGPIPE');
      assert.deepEqual(await readdir(tmp), [], 'tmpdir is empty');
      const coldKeys = await keysUnder(suite.client, cold, '');
      assert.deepEqual(
        coldKeys.filter((k) => k.includes(tag(BIG_PLATE))),
        [],
        'nothing of the interrupted plate in the cold bucket',
      );
      // s3rver does not implement ListMultipartUploads; radosgw does, as S3.
      if (name === 'rgw') {
        const open = await suite.client.send(new ListMultipartUploadsCommand({ Bucket: cold }));
        assert.deepEqual(open.Uploads ?? [], [], 'no multipart upload left');
      }
    });

    test('1: a summary that cannot be written (a full disk) fails the run, in one line', async () => {
      const csv = await writePlatesCsv([PLATE_B], await mkdtemp(join(suite.work, 'full-')));
      const full = await open('/dev/full', 'w');
      try {
        const r = await runCli(args('plan', csv, ['--json']), serverEnv(suite.server), {
          stdout: full.fd,
        });
        assert.equal(r.code, 1, r.stderr);
        assert.equal(
          r.stderr,
          'imgbackup: cannot write stdout (ENOSPC): no new plates; aborting work in flight and cleaning up\n',
        );
      } finally {
        await full.close();
      }
    });

    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const) {
      test(`${code}: ${signal} during an archive stops it and leaves nothing behind`, async () => {
        const csv = await writePlatesCsv(
          [BIG_PLATE],
          await mkdtemp(join(suite.work, `sig-${code}-`)),
        );
        const tmp = await mkdtemp(join(suite.work, 'tmp-'));
        const logs = await mkdtemp(join(suite.work, 'logs-'));
        let pid: number | undefined;
        let sent = false;
        const a = args('archive', csv, ['--tmpdir', tmp, '--log-dir', logs]);
        const r = await runCli(a, serverEnv(suite.server), {
          onSpawn: (p) => (pid = p),
          onStderr: (soFar) => {
            if (sent || !/big-plate: started/.test(soFar)) return;
            sent = true;
            // Once the tarball is being written (or after 3 s), interrupt.
            void (async () => {
              const until = Date.now() + 3000;
              while (Date.now() < until && (await readdir(tmp)).length === 0) {
                await new Promise((res) => setTimeout(res, 20));
              }
              process.kill(pid!, signal);
            })();
          },
        });
        assert.ok(sent, `the CLI never printed "started": ${r.stderr}`);
        assert.equal(r.signal, null, 'the CLI exits by itself, not killed by the signal');
        assert.equal(r.code, code, r.stderr + r.stdout);
        assert.match(r.stdout, /big-plate\s+interrupted/, r.stdout);
        assert.match(r.stdout, /1 plate\(s\): 1 interrupted/);
        const row = await jobLogRow(logs, BIG_PLATE);
        assert.deepEqual(row?.slice(6), ['0', String(code - 128), BIG_PLATE.plateId]);
        assert.deepEqual(await readdir(tmp), [], 'tmpdir is empty');
        const coldKeys = await keysUnder(suite.client, cold, '');
        assert.deepEqual(
          coldKeys.filter((k) => k.includes(tag(BIG_PLATE))),
          [],
          'nothing of the plate in the cold bucket',
        );
        const liveKeys = await keysUnder(suite.client, live, '');
        assert.deepEqual(
          liveKeys.filter((k) => k.includes('/backup/') && k.includes(tag(BIG_PLATE))),
          [],
          'no listing or delete script in the live bucket',
        );
      });
    }
  });
}
