// Partial restore through a tarball's index: `restore --include` of one file from a tarball of
// more than 64 MiB reads only the gzip members that hold it (bytes counted at a proxy); without
// an index, or with a damaged one, the tarball is streamed whole; verify --deep checks an index.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { IncomingMessage } from 'node:http';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { TarScanner } from '../../src/archive/tar-index.js';
import { runCli, plateArgs, serverEnv } from '../helpers/cli.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import {
  PROJECT,
  readTree,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
  type GroundTruth,
} from '../helpers/fixtures.js';
import { archivedCase, coldDir, plateLines, tagOf, type ArchivedCase } from '../helpers/restore.js';
import { getBytes, keysUnder } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer, type ServerSuite } from '../helpers/suite.js';

const MiB = 1024 * 1024;
const PLATE: FixturePlate = { plateId: 'idx-plate', plateIdFull: 'idx-plate' };
const [IMAGES, , ANALYSIS, BACKEND] = sourcePrefixes(PLATE) as [string, string, string, string];
// Random bytes do not compress: the images tarball stays above 64 MiB.
const TRUTH: GroundTruth = new Map([
  [`${IMAGES}a-first.tiff`, randomBytes(40 * MiB)],
  [`${IMAGES}b-wanted.tiff`, randomBytes(3 * MiB + 12345)],
  [`${IMAGES}c-last.tiff`, randomBytes(27 * MiB)],
  [`${ANALYSIS}Image.csv`, Buffer.from('ImageNumber,Count\n1,2\n')],
  [`${BACKEND}idx-plate.sqlite`, randomBytes(5000)],
]);
const WANTED_KEY = `${IMAGES}b-wanted.tiff`;
const WANTED_PATH = WANTED_KEY.slice('projects/'.length);
const WANTED = TRUTH.get(WANTED_KEY)!;
const TARBALL = `${coldDir}${tagOf(PLATE)}_images_illum_analysis.tar.gz`;
const INDEX = `projects/${PROJECT}/workspace/backup/${tagOf(PLATE)}_images_illum_analysis.index`;

/** The key a request names (path-style URLs, as the tool sends them to a custom endpoint). */
const keyOf = (req: IncomingMessage) =>
  decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
    .split('/')
    .slice(2)
    .join('/');

/** restore --include of the wanted file to a new dir, through a proxy counting tarball bytes. */
async function restoreWanted(
  suite: ServerSuite,
  c: ArchivedCase,
  name: string,
  csv = c.csv,
  tarball = TARBALL,
  include = WANTED_PATH,
) {
  const proxy = await startFaultProxy(suite.server.endpoint, {
    rate: 0,
    count: (req) => req.method === 'GET' && keyOf(req) === tarball,
  });
  const dir = join(c.dir, name);
  await mkdir(dir);
  try {
    const r = await runCli(
      [
        'restore',
        ...plateArgs({ csv, live: c.live, cold: c.cold }),
        '--to-dir',
        dir,
        '--include',
        include,
        '--json',
      ],
      { ...serverEnv(suite.server), AWS_ENDPOINT_URL: proxy.endpoint },
    );
    return { r, dir, read: proxy.counted };
  } finally {
    await proxy.close();
  }
}

async function assertOnlyWanted(dir: string) {
  const tree = await readTree(dir);
  assert.deepEqual([...tree.keys()], [WANTED_PATH]);
  assert.ok(tree.get(WANTED_PATH)!.equals(WANTED), 'restored bytes differ from the upload');
}

const message = (stdout: string) => String(plateLines(stdout)[0]?.message ?? '');

for (const name of testServerNames()) {
  describe(`restore --include through the tarball index against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-restore-index-test-');
    let archived: Promise<ArchivedCase> | undefined;
    const once = () => (archived ??= archivedCase(suite, [PLATE], () => TRUTH));

    test('one file of a 70 MiB tarball: reads at most its size + 2 MiB from the tarball', async (t) => {
      const c = await once();
      const index = await getBytes(suite.client, c.live, INDEX);
      const v = await c.run('verify', ['--deep']);
      assert.equal(v.code, 0, v.stderr + v.stdout);
      const { r, dir, read } = await restoreWanted(suite, c, 'indexed');
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(message(r.stdout), /images_illum_analysis\.tar\.gz read through its index/);
      await assertOnlyWanted(dir);
      t.diagnostic(`read ${read} bytes of the tarball for a file of ${WANTED.length}`);
      assert.ok(read > 0, 'nothing read from the tarball');
      assert.ok(
        read <= WANTED.length + 2 * MiB + index.length,
        `read ${read} bytes of the tarball for a file of ${WANTED.length}`,
      );
    });

    test('--to-s3 through the index: the one object, byte for byte, under --to-prefix', async () => {
      const c = await once();
      const r = await c.run('restore', [
        '--to-s3',
        '--to-prefix',
        'copy/',
        '--include',
        WANTED_PATH,
        '--json',
      ]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(message(r.stdout), /images_illum_analysis\.tar\.gz read through its index/);
      assert.deepEqual(await keysUnder(suite.client, c.live, 'copy/'), [`copy/${WANTED_KEY}`]);
      assert.ok((await getBytes(suite.client, c.live, `copy/${WANTED_KEY}`)).equals(WANTED));
    });

    test('a destination that refuses its HEAD fails the plate in its name; the tarball is not then read whole', async () => {
      const c = await once();
      const target = `s3://${c.live}/refused/${WANTED_KEY}`;
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        // A role that may write under refused/ but not read there.
        answer: (req) =>
          req.method === 'HEAD' && keyOf(req).startsWith('refused/')
            ? { status: 403, code: 'AccessDenied', message: 'Access Denied' }
            : undefined,
        count: (req) => req.method === 'GET' && keyOf(req) === TARBALL,
      });
      try {
        const r = await c.run('restore', [
          '--to-s3',
          '--to-prefix',
          'refused/',
          '--include',
          WANTED_PATH,
          '--json',
          '--endpoint-url',
          proxy.endpoint,
        ]);
        assert.equal(r.code, 1, r.stderr + r.stdout);
        const msg = message(r.stdout);
        assert.match(
          msg,
          new RegExp(
            `cannot check what is at ${target.replace(/\./g, '\\.')} \\(.*\\); nothing of it was written: give this run read access there, then re-run`,
          ),
        );
        assert.doesNotMatch(msg, /streamed whole|not a readable tarball|did not read back/);
        assert.ok(proxy.counted <= WANTED.length + 2 * MiB, `read ${proxy.counted} bytes`);
        assert.deepEqual(await keysUnder(suite.client, c.live, 'refused/'), []);
      } finally {
        await proxy.close();
      }
    });

    test('a damaged index: verify --deep fails naming it; restore streams whole, bytes right', async () => {
      const c = await once();
      const text = (await getBytes(suite.client, c.live, INDEX)).toString('utf8');
      // Every gzip member but the first starts one byte later: still a well-formed index.
      const edited = text.replace(/^m (\d+) (\d+)$/gm, (line, at: string, tar: string) =>
        at === '0' ? line : `m ${Number(at) + 1} ${tar}`,
      );
      assert.notEqual(edited, text);
      await suite.client.send(new PutObjectCommand({ Bucket: c.live, Key: INDEX, Body: edited }));
      const v = await c.run('verify', ['--deep']);
      assert.equal(v.code, 3, v.stderr + v.stdout); // a verification mismatch
      assert.match(
        v.stdout + v.stderr,
        new RegExp(`${INDEX.replace(/\./g, '\\.')} does not match`),
      );
      const { r, dir, read } = await restoreWanted(suite, c, 'damaged');
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(message(r.stdout), /streamed whole: its members did not read back/);
      await assertOnlyWanted(dir);
      assert.ok(read > 64 * MiB, `read only ${read} bytes: not the whole tarball`);
    });

    test('an archive without an index (made before it) restores by streaming whole', async () => {
      const c = await once();
      await suite.client.send(new DeleteObjectCommand({ Bucket: c.live, Key: INDEX }));
      const { r, dir } = await restoreWanted(suite, c, 'no-index');
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(message(r.stdout), /streamed whole: it has no index/);
      await assertOnlyWanted(dir);
      const v = await c.run('verify', ['--deep']);
      assert.equal(v.code, 0, v.stderr + v.stdout);
    });

    test('--no-compress: the index gives tarball offsets; one file costs its header and its bytes', async () => {
      const c = await once();
      const P: FixturePlate = { plateId: 'idx-plain', plateIdFull: 'idx-plain' };
      const [images, , , backend] = sourcePrefixes(P) as [string, string, string, string];
      const wanted = randomBytes(2 * MiB + 7);
      const truth: GroundTruth = new Map([
        [`${images}x.tiff`, randomBytes(6 * MiB)],
        [`${images}y.tiff`, wanted],
        [`${images}z.tiff`, randomBytes(5 * MiB)],
        [`${backend}idx-plain.sqlite`, randomBytes(100)],
      ]);
      await uploadAll(suite.client, c.live, truth);
      const a = await c.run('archive', ['--no-compress'], [P]);
      assert.equal(a.code, 0, a.stderr + a.stdout);
      const csv = await writePlatesCsv([P], await mkdtemp(join(c.dir, 'plain-')));
      const include = `${images}y.tiff`.slice('projects/'.length);
      const tarball = `${coldDir}${tagOf(P)}_images_illum_analysis.tar`;
      const { r, dir, read } = await restoreWanted(suite, c, 'plain', csv, tarball, include);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(message(r.stdout), /images_illum_analysis\.tar read through its index/);
      const tree = await readTree(dir);
      assert.deepEqual([...tree.keys()], [include]);
      assert.ok(tree.get(include)!.equals(wanted));
      assert.equal(read, 512 + wanted.length); // its ustar header, then its bytes
    });

    test('a tarball read that fails while a member is being published: that member is removed too', async () => {
      const c = await once();
      // big.tiff is sized so its last byte ends a 4 MiB range read of the tarball: the next
      // range, refused, fails the read while big.tiff's upload is completing. Its tar offset
      // is found by archiving a plate whose names have the same lengths first.
      const plate = async (plateId: string, bigSize: number) => {
        const P: FixturePlate = { plateId, plateIdFull: plateId };
        const [images, , , backend] = sourcePrefixes(P) as [string, string, string, string];
        const truth: GroundTruth = new Map([
          [`${images}big.tiff`, randomBytes(bigSize)],
          [`${images}zz-after.tiff`, randomBytes(1000)],
          [`${backend}${plateId}.sqlite`, randomBytes(100)],
        ]);
        await uploadAll(suite.client, c.live, truth);
        assert.equal((await c.run('archive', ['--no-compress'], [P])).code, 0);
        const tarball = `${coldDir}${tagOf(P)}_images_illum_analysis.tar`;
        const scan = new TarScanner();
        scan.push(await getBytes(suite.client, c.cold, tarball));
        const big = scan.entries.find((e) => e.name.endsWith('/big.tiff'))!;
        return { P, images, tarball, data: big.data, end: big.data + big.size };
      };
      const probe = await plate('idx-brk-a', 20 * MiB);
      const rangeEnd = Math.ceil(probe.end / (4 * MiB)) * 4 * MiB;
      const b = await plate('idx-brk-b', rangeEnd - probe.data); // above 16 MiB: multipart
      assert.equal(b.end, rangeEnd, 'big.tiff ends a range');
      // Without T_file_etags_s3.txt only the tarball's md5, read at its end, proves a member.
      await suite.client.send(
        new DeleteObjectCommand({
          Bucket: c.live,
          Key: `projects/${PROJECT}/workspace/backup/${tagOf(b.P)}_file_etags_s3.txt`,
        }),
      );
      // big.tiff's CompleteMultipartUpload takes effect at once; its answer comes 1.5 s later.
      // The next range's refusal and any AbortMultipartUpload of it wait until it has.
      let completes = 0;
      let refused = 0;
      let completed = () => {};
      // (released after 20 s in any case, so a regression fails the test instead of hanging it)
      const done = new Promise<void>((r) => {
        completed = r;
        setTimeout(r, 20_000).unref();
      });
      const upload = (req: IncomingMessage, method: string) =>
        req.method === method &&
        keyOf(req).endsWith(`${b.images}big.tiff`) &&
        /[?&]uploadId=/.test(req.url ?? '');
      const next = (req: IncomingMessage) =>
        req.method === 'GET' &&
        keyOf(req) === b.tarball &&
        (req.headers.range ?? '').startsWith(`bytes=${rangeEnd}-`);
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        // The refusal comes once big.tiff is read whole: a read ahead fails no earlier.
        onRequest: (req) => (upload(req, 'DELETE') || next(req) ? done : undefined),
        answer: (req) => {
          if (!next(req)) return undefined;
          refused += 1;
          return { status: 412, code: 'PreconditionFailed', message: 'changed' };
        },
        holdAnswer: (req) => {
          if (!upload(req, 'POST')) return undefined;
          completes += 1;
          completed();
          return new Promise((r) => setTimeout(r, 1500));
        },
      });
      const csv = await writePlatesCsv([b.P], await mkdtemp(join(c.dir, 'break-')));
      try {
        const r = await runCli(
          [
            'restore',
            ...plateArgs({ csv, live: c.live, cold: c.cold }),
            '--to-s3',
            '--to-prefix',
            'broken/',
            '--json',
          ],
          { ...serverEnv(suite.server), AWS_ENDPOINT_URL: proxy.endpoint },
        );
        assert.equal(r.code, 1, r.stderr + r.stdout);
        assert.equal(completes, 1, 'big.tiff was completed once');
        assert.equal(refused, 1, 'the range after it was refused');
        assert.match(message(r.stdout), /changed while it was read/);
        const left = await keysUnder(suite.client, c.live, `broken/${b.images}`);
        assert.deepEqual(left, [], 'an unproven member was left on S3');
      } finally {
        await proxy.close();
      }
    });
  });
}
