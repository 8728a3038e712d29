// What verify proves and whose outputs a command finds (issue 11, items 1, 4, 5, 6 and 13): an
// old archive is matched by full key, outputs of another plate with the same tag are refused,
// keys tar cannot both restore fail verify, a failed verify leaves no passing record, and a
// tarball copied in place is judged by its md5.
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { runCli, serverEnv } from '../helpers/cli.js';
import {
  BATCH,
  expectedListing,
  imageLike,
  md5hex,
  PLATE_A,
  PROJECT,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
  type GroundTruth,
} from '../helpers/fixtures.js';
import { lsLine, writeOldArchive } from '../helpers/old-archive.js';
import { getBytes, keysUnder, snapshot } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

const tagOf = (batch: string, p: FixturePlate) => `${PROJECT}_${batch}_${p.plateId}`;
const backupKey = (batch: string, p: FixturePlate, name: string) =>
  `projects/${PROJECT}/workspace/backup/${tagOf(batch, p)}_${name}`;
const coldKey = (p: FixturePlate, name: string) =>
  `imaging_analysis/${PROJECT}/plates/${tagOf(BATCH, p)}_${name}`;

/** A plate's four source prefixes in any batch. */
const prefixesIn = (batch: string, p: FixturePlate) => [
  `projects/${PROJECT}/${batch}/images/${p.plateIdFull}/`,
  `projects/${PROJECT}/${batch}/illum/${p.plateId}/`,
  `projects/${PROJECT}/workspace/analysis/${batch}/${p.plateId}/`,
  `projects/${PROJECT}/workspace/backend/${batch}/${p.plateId}/`,
];

/** A small plate: two same-size images, and one file in each other source. */
function smallPlate(batch: string, p: FixturePlate, seed: number): GroundTruth {
  const [images, illum, analysis, backend] = prefixesIn(batch, p) as [
    string,
    string,
    string,
    string,
  ];
  return new Map([
    [`${images}r01.tiff`, imageLike(6_000, seed)],
    [`${images}r02.tiff`, imageLike(6_000, seed + 1)],
    [`${illum}${p.plateId}_IllumDNA.npy`, imageLike(2_000, seed + 2)],
    [`${analysis}A01/Cells.csv`, Buffer.from(`cells of ${p.plateId}\n`)],
    [`${backend}${p.plateId}.sqlite`, imageLike(3_000, seed + 3)],
  ]);
}

const keysOf = (m: GroundTruth, prefixes: string[]) =>
  [...m.keys()].filter((k) => prefixes.some((pre) => k.startsWith(pre))).sort();

for (const name of testServerNames()) {
  describe(`what verify proves, whose outputs a command finds, against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-proof-test-');

    async function buckets() {
      return {
        live: await suite.server.newBucket('live'),
        cold: await suite.server.newBucket('cold'),
        dir: await mkdtemp(join(suite.work, 'case-')),
      };
    }

    /** Runs a command on the given plates of one batch; archive gets its own --tmpdir. */
    async function runner(b: { live: string; cold: string; dir: string }) {
      return async (
        cmd: string,
        plates: FixturePlate[],
        opts: { batch?: string; extra?: string[]; env?: NodeJS.ProcessEnv } = {},
      ) => {
        const dir = await mkdtemp(join(b.dir, 'run-'));
        const csv = await writePlatesCsv(plates, dir);
        return runCli(
          [
            cmd,
            ...['--plates', csv, '--project-name', PROJECT, '--batch-id', opts.batch ?? BATCH],
            ...['--bucket', b.live, '--cold-bucket', b.cold],
            ...(cmd === 'archive' ? ['--tmpdir', dir] : []),
            ...(opts.extra ?? []),
          ],
          { ...serverEnv(suite.server), ...opts.env },
        );
      };
    }

    test('an old-script archive of "Measurement 1" never lets delete take "Measurement 2" files it does not hold', async () => {
      const b = await buckets();
      const run = await runner(b);
      const m1 = PLATE_A; // BR00092655__2017-12-10T12_48_16-Measurement 1
      const m2: FixturePlate = {
        plateId: m1.plateId,
        plateIdFull: m1.plateIdFull.replace('Measurement 1', 'Measurement 2'),
      };
      const archived = smallPlate(BATCH, m1, 11);
      const [images2] = sourcePrefixes(m2) as [string];
      // Same names and sizes as Measurement 1's images, other bytes, written before the archive.
      const others: GroundTruth = new Map([
        [`${images2}r01.tiff`, imageLike(6_000, 91)],
        [`${images2}r02.tiff`, imageLike(6_000, 92)],
      ]);
      await uploadAll(suite.client, b.live, new Map([...archived, ...others]));
      await writeOldArchive(suite.client, { ...b, work: b.dir, plate: m1, objects: archived });

      const v = await run('verify', [m2], { extra: ['--deep'] });
      assert.equal(v.code, 0, v.stdout + v.stderr);
      for (const k of others.keys()) assert.ok(v.stdout.includes(k), `names ${k} as not archived`);
      assert.match(v.stdout, /added since the archive \(not archived, never deleted\)/);

      const d = await run('delete', [m2], { extra: ['--yes'] });
      assert.equal(d.code, 0, d.stdout + d.stderr);
      const everything = new Map([...archived, ...others]);
      // Only the keys the tarball holds by full key are gone; both plates' images are there.
      const images1 = sourcePrefixes(m1)[0]!;
      assert.deepEqual(await keysUnder(suite.client, b.live, `projects/${PROJECT}/${BATCH}/`), [
        ...keysOf(everything, [images1]),
        ...keysOf(everything, [images2]),
      ]);
      assert.deepEqual(
        await keysUnder(suite.client, b.live, `projects/${PROJECT}/workspace/analysis/`),
        [],
      );

      // Now no current file of the plate is in that archive: it never verifies it.
      const again = await run('verify', [m2]);
      assert.equal(again.code, 3, again.stdout + again.stderr);
      assert.match(again.stdout, /holds none of this plate's 2 current file\(s\) by full key/);
      const d2 = await run('delete', [m2], { extra: ['--yes'] });
      assert.equal(d2.code, 1, d2.stdout + d2.stderr);
      assert.match(d2.stdout, /not verified/);
      assert.deepEqual(await keysUnder(suite.client, b.live, images2), keysOf(others, [images2]));
    });

    test('an old-script archive whose untrimmed listing names files its tarball lacks: verify --deep refuses it', async () => {
      const b = await buckets();
      const run = await runner(b);
      const m1: FixturePlate = { plateId: 'OLD2', plateIdFull: 'OLD2 Measurement 1' };
      const m2: FixturePlate = { plateId: 'OLD2', plateIdFull: 'OLD2 Measurement 2' };
      const inTar = smallPlate(BATCH, m1, 81);
      const [images1] = sourcePrefixes(m1) as [string];
      const [images2] = sourcePrefixes(m2) as [string];
      const others: GroundTruth = new Map(
        [...inTar]
          .filter(([k]) => k.startsWith(images1))
          .map(([k, v], i) => [k.replace(images1, images2), imageLike(v.length, 85 + i)]),
      );
      await uploadAll(suite.client, b.live, new Map([...inTar, ...others]));
      await writeOldArchive(suite.client, { ...b, work: b.dir, plate: m1, objects: inTar });
      // The untrimmed listing names Measurement 2's images (same cut paths, same sizes) where
      // the tarball holds Measurement 1's: only the tarball's members can tell.
      // (Each line as `aws s3 ls` would print it, time included: the listing is the lie.)
      const lying = (
        await Promise.all(
          [...inTar.keys()].map((k) => lsLine(suite.client, b.live, k.replace(images1, images2))),
        )
      ).join('');
      await suite.client.send(
        new PutObjectCommand({
          Bucket: b.cold,
          Key: coldKey(m1, 'file_listing_untrimmed_s3.txt'),
          Body: lying,
        }),
      );
      const deep = await run('verify', [m2], { extra: ['--deep'] });
      assert.equal(deep.code, 3, deep.stdout + deep.stderr);
      assert.match(
        deep.stdout,
        /OLD2\s+mismatch.*files listed as archived but not in the tarballs/,
      );
      for (const k of others.keys()) assert.ok(deep.stdout.includes(k), `names ${k}`);
      const d = await run('delete', [m2], { extra: ['--yes'] });
      assert.equal(d.code, 1, d.stdout + d.stderr);
      const all = new Map([...inTar, ...others]);
      for (const pre of [...sourcePrefixes(m1), images2]) {
        assert.deepEqual(await keysUnder(suite.client, b.live, pre), keysOf(all, [pre]));
      }
    });

    test("plates sharing a tag (batch X_1 plate 2, batch X plate 1_2): every command refuses the other plate's outputs", async () => {
      const b = await buckets();
      const run = await runner(b);
      const a: FixturePlate = { plateId: '2', plateIdFull: '2' };
      const other: FixturePlate = { plateId: '1_2', plateIdFull: '1_2' };
      assert.equal(tagOf('X_1', a), tagOf('X', other));
      const truth = new Map([...smallPlate('X_1', a, 21), ...smallPlate('X', other, 31)]);
      await uploadAll(suite.client, b.live, truth);
      assert.equal((await run('archive', [a], { batch: 'X_1' })).code, 0);
      assert.equal((await run('verify', [a], { batch: 'X_1' })).code, 0);
      const before = [await snapshot(suite.client, b.live), await snapshot(suite.client, b.cold)];

      const whose = new RegExp(
        `1_2\\s+failed.*belongs to project "${PROJECT}" batch "X_1" plate "2", not to this plate`,
      );
      for (const [cmd, extra] of [
        ['archive', []],
        ['verify', []],
        ['verify', ['--deep']],
        ['plan', []],
        ['collect-deletes', ['--out', join(b.dir, 'delete_s3.sh')]],
        ['delete', ['--yes']],
        ['delete', ['--yes', '--force-unverified']],
        ['restore', ['--to-s3']],
        ['restore', ['--to-dir', b.dir]],
      ] as const) {
        const r = await run(cmd, [other], { batch: 'X', extra: [...extra] });
        assert.equal(r.code, 1, `${cmd} ${extra.join(' ')}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, whose, `${cmd} ${extra.join(' ')}`);
      }
      assert.deepEqual(
        [await snapshot(suite.client, b.live), await snapshot(suite.client, b.cold)],
        before,
        'nothing written, nothing removed: the first plate record is untouched',
      );
      const record = JSON.parse(
        (await getBytes(suite.client, b.live, backupKey('X_1', a, 'verified.json'))).toString(),
      ) as Record<string, unknown>;
      assert.deepEqual(
        [record.passed, record.project, record.batch, record.plateId],
        [true, PROJECT, 'X_1', '2'],
      );
      // The in-progress marker names its plate too: a run of the first plate interrupted after
      // its first tarball is never taken for this plate's own partial archive (and removed).
      const b2 = await buckets();
      const run2 = await runner(b2);
      await uploadAll(suite.client, b2.live, smallPlate('X', other, 31));
      const marker = backupKey('X', other, 'archive_in_progress.json');
      const body = JSON.stringify({ project: PROJECT, batch: 'X_1', plateId: '2', pid: 1 });
      await suite.client.send(new PutObjectCommand({ Bucket: b2.live, Key: marker, Body: body }));
      const partial = `imaging_analysis/${PROJECT}/plates/${tagOf('X_1', a)}_backend.tar.gz`;
      await suite.client.send(new PutObjectCommand({ Bucket: b2.cold, Key: partial, Body: 'x' }));
      const before2 = [
        await snapshot(suite.client, b2.live),
        await snapshot(suite.client, b2.cold),
      ];
      const r = await run2('archive', [other], { batch: 'X' });
      assert.deepEqual(
        [await snapshot(suite.client, b2.live), await snapshot(suite.client, b2.cold)],
        before2,
      );
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /1_2\s+failed.*archive_in_progress\.json belongs to .*batch "X_1"/);
    });

    test('an archive holding a file and a key below it (a, a/b or a/) fails verify; delete never removes them', async () => {
      const b = await buckets();
      const run = await runner(b);
      const p1: FixturePlate = { plateId: 'CL1', plateIdFull: 'CL1' };
      const p2: FixturePlate = { plateId: 'CL2', plateIdFull: 'CL2' };
      const truth = new Map([...smallPlate(BATCH, p1, 41), ...smallPlate(BATCH, p2, 51)]);
      const [img1] = sourcePrefixes(p1) as [string];
      const [img2] = sourcePrefixes(p2) as [string];
      truth.set(`${img1}a`, Buffer.from('file a\n'));
      truth.set(`${img2}a`, Buffer.from('file a\n'));
      await uploadAll(suite.client, b.live, truth);
      assert.equal((await run('archive', [p1, p2])).code, 0);
      assert.equal((await run('verify', [p1, p2])).code, 0);
      const planFile = join(b.dir, 'delete_s3.plan.jsonl');
      const out = join(b.dir, 'delete_s3.sh');
      assert.equal((await run('collect-deletes', [p1, p2], { extra: ['--out', out] })).code, 0);
      assert.ok((await readFile(planFile, 'utf8')).includes(`${img1}a"`));

      // Outputs as if archived with the pair: CL1 gets a file a/b, CL2 a folder marker a/.
      const below = new Map([
        [`${img1}a/b`, Buffer.from('file b\n')],
        [`${img2}a/`, Buffer.alloc(0)],
      ]);
      await uploadAll(suite.client, b.live, below);
      for (const [k, v] of below) truth.set(k, v);
      for (const p of [p1, p2]) {
        const objs = new Map(
          [...truth].filter(([k]) => sourcePrefixes(p).some((pre) => k.startsWith(pre))),
        );
        const listing = expectedListing(objs);
        const files = [...objs].filter(([k]) => !k.endsWith('/'));
        const etags = Buffer.concat(
          files
            .map(([k, v]) =>
              Buffer.from(`${k.slice('projects/'.length)}\t${v.length}\t${md5hex(v)}\n`),
            )
            .sort(Buffer.compare),
        );
        const ls = [...objs]
          .map(([k, v]) => `2026-01-01 00:00:00 ${String(v.length).padStart(10, ' ')} ${k}\n`)
          .join('');
        for (const [bucket, key, body] of [
          [b.live, backupKey(BATCH, p, 'file_listing_s3.txt'), listing],
          [b.live, backupKey(BATCH, p, 'file_listing_tar.txt'), listing],
          [b.live, backupKey(BATCH, p, 'file_etags_s3.txt'), etags],
          [b.cold, coldKey(p, 'file_listing_untrimmed_s3.txt'), ls],
        ] as const) {
          await suite.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
        }
      }
      const v = await run('verify', [p1, p2]);
      assert.notEqual(v.code, 0, v.stdout + v.stderr);
      assert.match(v.stdout, /CL1\s+(mismatch|failed)/);
      assert.match(v.stdout, /CL2\s+(mismatch|failed)/);
      for (const pair of [
        [`${img1}a`, `${img1}a/b`],
        [`${img2}a`, `${img2}a/`],
      ]) {
        assert.ok(v.stdout.includes(`"${pair[0]}" and "${pair[1]}"`), `names ${pair.join(', ')}`);
      }
      const d = await run('delete', [p1, p2], { extra: ['--yes'] });
      assert.equal(d.code, 1, d.stdout + d.stderr);
      assert.match(d.stdout, /CL1\s+failed.*not verified/);
      const forced = await run('delete', [p1, p2], {
        extra: ['--yes', '--force-unverified', '--plan', planFile],
      });
      assert.equal(forced.code, 1, forced.stdout + forced.stderr);
      assert.match(forced.stdout, /CL1\s+failed.*refusing keys that tar cannot both restore/);
      assert.match(forced.stdout, /CL2\s+failed.*refusing keys that tar cannot both restore/);
      for (const p of [p1, p2]) {
        for (const pre of sourcePrefixes(p)) {
          assert.deepEqual(await keysUnder(suite.client, b.live, pre), keysOf(truth, [pre]));
        }
      }
    });

    test('a verify that fails leaves a failed record, or fails loudly; never a passing record delete trusts', async () => {
      const b = await buckets();
      const run = await runner(b);
      const p: FixturePlate = { plateId: 'F1', plateIdFull: 'F1' };
      const truth = smallPlate(BATCH, p, 61);
      const [images] = sourcePrefixes(p) as [string];
      await uploadAll(suite.client, b.live, truth);
      assert.equal((await run('archive', [p])).code, 0);
      const recordKey = backupKey(BATCH, p, 'verified.json');
      const readRecord = async () =>
        JSON.parse((await getBytes(suite.client, b.live, recordKey)).toString()) as {
          passed?: boolean;
          problem?: string;
        };
      const tarListing = backupKey(BATCH, p, 'file_listing_tar.txt');
      const listing = await getBytes(suite.client, b.live, tarListing);
      const breakArchive = () =>
        suite.client.send(
          new PutObjectCommand({
            Bucket: b.live,
            Key: tarListing,
            Body: Buffer.concat([
              listing,
              Buffer.from(`${images.slice('projects/'.length)}missing.tif\t5\n`),
            ]),
          }),
        );
      const restoreArchive = () =>
        suite.client.send(new PutObjectCommand({ Bucket: b.live, Key: tarListing, Body: listing }));
      const isDeleteObjects = (req: { method?: string; url?: string }) =>
        req.method === 'POST' && /[?&]delete(=|&|$)/.test(req.url ?? '');
      const isRecordPut = (req: { method?: string; url?: string }) =>
        req.method === 'PUT' && (req.url ?? '').split('?')[0]!.endsWith('_verified.json');
      const internal = { status: 500, code: 'InternalError', message: 'injected' };

      // 1. The store refuses to remove the record: the failed record written over it is what stays.
      assert.equal((await run('verify', [p])).code, 0);
      await breakArchive();
      const noDelete = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        answer: (req) => (isDeleteObjects(req) ? internal : undefined),
      });
      try {
        const v = await run('verify', [p], { env: { AWS_ENDPOINT_URL: noDelete.endpoint } });
        assert.equal(v.code, 3, v.stdout + v.stderr);
        assert.match(v.stdout, /F1\s+mismatch.*listings differ/);
      } finally {
        await noDelete.close();
      }
      const failed = await readRecord();
      assert.equal(failed.passed, false);
      assert.match(failed.problem ?? '', /listings differ/);
      const d = await run('delete', [p], { extra: ['--yes'] });
      assert.equal(d.code, 1, d.stdout + d.stderr);
      assert.match(
        d.stdout,
        /F1\s+failed.*not verified: the last verify .* failed: listings differ/,
      );

      // 2. Neither the failed record nor the removal takes: the run says so, loudly.
      await restoreArchive();
      assert.equal((await run('verify', [p])).code, 0);
      assert.equal((await readRecord()).passed, true);
      await breakArchive();
      const nothing = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        answer: (req) => (isDeleteObjects(req) || isRecordPut(req) ? internal : undefined),
      });
      try {
        const v = await run('verify', [p], { env: { AWS_ENDPOINT_URL: nothing.endpoint } });
        assert.equal(v.code, 1, v.stdout + v.stderr);
        assert.ok(
          v.stdout.includes(
            `the earlier record s3://${b.live}/${recordKey} could be neither replaced by a failed one nor removed`,
          ),
          v.stdout,
        );
        assert.match(v.stdout, /remove it by hand before any delete/);
      } finally {
        await nothing.close();
      }
      // The passing record left there is older than the listing it no longer describes.
      const d2 = await run('delete', [p], { extra: ['--yes'] });
      assert.equal(d2.code, 1, d2.stdout + d2.stderr);
      assert.match(
        d2.stdout,
        /F1\s+failed.*file_listing_tar\.txt changed since the plate was verified/,
      );
      for (const pre of sourcePrefixes(p))
        assert.deepEqual(await keysUnder(suite.client, b.live, pre), keysOf(truth, [pre]));
    });

    test('a tarball copied in place: its md5 as the new ETag passes; another new ETag needs --deep', async () => {
      const b = await buckets();
      const run = await runner(b);
      const p: FixturePlate = { plateId: 'E1', plateIdFull: 'E1' };
      await uploadAll(suite.client, b.live, smallPlate(BATCH, p, 71));
      assert.equal((await run('archive', [p])).code, 0);
      const key = coldKey(p, 'backend.tar.gz');
      const etagOf = async () =>
        (
          await suite.client.send(new HeadObjectCommand({ Bucket: b.cold, Key: key }))
        ).ETag!.replace(/"/g, '');
      const md5 = (await getBytes(suite.client, b.cold, coldKey(p, 'backend.md5')))
        .toString()
        .split(' ')[0]!;
      assert.equal(await etagOf(), md5, 'a small tarball went up as one PUT');

      // What S3 names a one-part multipart upload of these bytes: md5 of the part md5s, "-1".
      const onePart = `${createHash('md5').update(Buffer.from(md5, 'hex')).digest('hex')}-1`;
      const T = tagOf(BATCH, p);
      // An archive uploaded in parts (its .etag holds the multipart ETag), copied in place as a
      // storage-class change does: the new ETag is the plain md5, which X.md5 holds.
      await suite.client.send(
        new PutObjectCommand({
          Bucket: b.cold,
          Key: coldKey(p, 'backend.etag'),
          Body: `${onePart}\n`,
        }),
      );
      await suite.client.send(
        new CopyObjectCommand({
          Bucket: b.cold,
          Key: key,
          CopySource: `${b.cold}/${key}`,
          MetadataDirective: 'REPLACE',
          ContentType: 'application/gzip',
        }),
      );
      assert.equal(await etagOf(), md5, 'a copy in place has the plain md5 as its ETag');
      const copied = await run('verify', [p]);
      assert.equal(copied.code, 0, copied.stdout + copied.stderr);
      assert.match(
        copied.stdout,
        new RegExp(
          `E1\\s+verified.*ETag changed since the archive, to the md5 that ${T}_backend\\.md5 holds`,
        ),
      );
      // Back to the archive's own .etag (a single PUT's: the md5).
      await suite.client.send(
        new PutObjectCommand({ Bucket: b.cold, Key: coldKey(p, 'backend.etag'), Body: `${md5}\n` }),
      );
      if (name === 'rgw') {
        // A multipart copy in place with another part size (s3rver gives every object its
        // content md5 as ETag, so only a real S3 shows this): the new ETag is not the md5.
        const up = await suite.client.send(
          new CreateMultipartUploadCommand({ Bucket: b.cold, Key: key }),
        );
        const part = await suite.client.send(
          new UploadPartCopyCommand({
            Bucket: b.cold,
            Key: key,
            UploadId: up.UploadId,
            PartNumber: 1,
            CopySource: `${b.cold}/${key}`,
          }),
        );
        await suite.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: b.cold,
            Key: key,
            UploadId: up.UploadId,
            MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.CopyPartResult!.ETag }] },
          }),
        );
        assert.equal(await etagOf(), onePart);
        const v = await run('verify', [p]);
        assert.equal(v.code, 1, v.stdout + v.stderr);
        assert.match(
          v.stdout,
          new RegExp(
            `E1\\s+failed.*${T}_backend\\.tar\\.gz: ETag changed since the archive \\(${onePart}; ${T}_backend\\.etag says ${md5}\\); run verify --deep`,
          ),
        );
        assert.ok(!v.stdout.includes('.tar.gz.etag'), 'names the real key');
        const deep = await run('verify', [p], { extra: ['--deep'] });
        assert.equal(deep.code, 0, deep.stdout + deep.stderr);
        assert.match(deep.stdout, /E1\s+verified/);
      }

      // The record names the tarball's ETag now, so delete trusts it.
      const d = await run('delete', [p], { extra: ['--yes', '--dry-run'] });
      assert.equal(d.code, 0, d.stdout + d.stderr);
    });
  });
}
