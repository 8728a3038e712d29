import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { PLATE_B, type FixturePlate } from '../helpers/fixtures.js';
import {
  archivedCase,
  coldDir,
  moveCold,
  plateLines,
  restoreHeader,
  tagOf,
} from '../helpers/restore.js';
import { snapshot } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

const P1: FixturePlate = { plateId: 'R1', plateIdFull: 'R1 Measurement 1' };
const P2 = PLATE_B;

for (const name of testServerNames('glacier')) {
  describe(`restore-request, restore-status against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-rr-test-');

    test('status, dry run, request and wait: each answer as a user sees it', async () => {
      const c = await archivedCase(suite, [P1, P2]);
      const moved = await moveCold(suite.client, c.cold, [P1, P2], 'GLACIER');
      // two tarballs, two .md5, two .etag per plate
      assert.equal(moved.length, 12);

      const before = await c.run('restore-status', ['--json']);
      assert.equal(before.code, 0, before.stderr);
      const lines = plateLines(before.stdout);
      assert.deepEqual(
        lines.map((l) => [l.plateId, l.status]),
        [
          [P2.plateId, 'not restored'],
          [P1.plateId, 'not restored'],
        ],
      );
      assert.match(String(lines[0]!.message), /run imgbackup restore-request/);

      const timedOut = await c.run('restore-status', ['--wait', '--timeout', '2s', '--poll', '1s']);
      assert.equal(timedOut.code, 1);
      assert.match(timedOut.stdout, /not readable within --timeout/);
      assert.match(
        timedOut.stderr,
        /restore-status: 2 plate\(s\) not readable yet \(.*R1: not restored.*\); next look in 1 s/,
      );

      // --dry-run: the bytes of exactly the moved objects, an estimate per tier, nothing sent
      const snap = await snapshot(suite.client, c.cold);
      const dry = await c.run('restore-request', ['--dry-run', '--json']);
      assert.equal(dry.code, 0, dry.stderr);
      const sizeOf = async (key: string) =>
        (await suite.client.send(new HeadObjectCommand({ Bucket: c.cold, Key: key })))
          .ContentLength!;
      for (const l of plateLines(dry.stdout)) {
        const mine = moved.filter((k) =>
          k.startsWith(`${coldDir}${tagOf(l.plateId === P1.plateId ? P1 : P2)}_`),
        );
        let bytes = 0;
        for (const k of mine) bytes += await sizeOf(k);
        assert.equal(l.status, 'planned');
        assert.equal(l.bytesIn, bytes);
        assert.match(
          String(l.message),
          new RegExp(
            `6 object\\(s\\), ${bytes} bytes from GLACIER: Standard 3-5 hours ~\\$0\\.00, Bulk 5-12 hours ~\\$0\\.00, Expedited 1-5 minutes ~\\$0\\.06`,
          ),
        );
      }
      assert.deepEqual(await snapshot(suite.client, c.cold), snap);
      for (const k of moved) assert.equal(await restoreHeader(suite.client, c.cold, k), undefined);

      const req = await c.run('restore-request', ['--json', '--days', '2']);
      assert.equal(req.code, 0, req.stderr);
      assert.deepEqual(
        plateLines(req.stdout).map((l) => l.status),
        ['requested', 'requested'],
      );
      for (const k of moved)
        assert.match(
          (await restoreHeader(suite.client, c.cold, k)) ?? '',
          /ongoing-request="false"/,
        );

      const waited = await c.run('restore-status', ['--wait', '--timeout', '1m', '--json']);
      assert.equal(waited.code, 0, waited.stderr);
      for (const l of plateLines(waited.stdout)) {
        assert.equal(l.status, 'readable');
        assert.match(String(l.message), /_images_illum_analysis\.tar\.gz: ready until 20\d\d-/);
      }

      // again: 200 "already restored" (its expiry extended), nothing left restoring
      const again = await c.run('restore-request', ['--json']);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(
        plateLines(again.stdout).map((l) => l.status),
        ['readable', 'readable'],
      );
    });

    test('Expedited for DEEP_ARCHIVE is refused before any request; an unknown plate fails alone', async () => {
      const c = await archivedCase(suite, [P1, P2]);
      const glacier = await moveCold(suite.client, c.cold, [P1], 'GLACIER');
      await moveCold(suite.client, c.cold, [P2], 'DEEP_ARCHIVE');
      const r = await c.run('restore-request', ['--tier', 'Expedited']);
      assert.equal(r.code, 2);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(
        lines[0]!,
        /--tier Expedited is not offered for DEEP_ARCHIVE .*use --tier Standard or Bulk/,
      );
      // the GLACIER plate, which Expedited could serve, got no request either
      for (const k of glacier)
        assert.equal(await restoreHeader(suite.client, c.cold, k), undefined);

      const unknown: FixturePlate = { plateId: 'NOPE', plateIdFull: 'NOPE' };
      const u = await c.run('restore-request', ['--json'], [unknown, P1]);
      assert.equal(u.code, 1);
      const [bad, good] = plateLines(u.stdout);
      assert.equal(bad!.status, 'failed');
      assert.match(
        String(bad!.message),
        /not archived: s3:\/\/.*NOPE_images_illum_analysis\.tar\.gz.* missing/,
      );
      assert.equal(good!.status, 'requested');
    });
  });
}
