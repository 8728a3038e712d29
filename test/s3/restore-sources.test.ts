// Archived SOURCE objects: found, restored, then archived. GLACIER is moto's own emulation
// (GET 403 InvalidObjectState until RestoreObject, which completes at once); Intelligent-Tiering's
// archive tiers, which no test server has, are emulated by the fault proxy (README "Tests").
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { plateArgs, runCli, serverEnv } from '../helpers/cli.js';
import {
  startFaultProxy,
  type FaultProxy,
  type FaultProxyOptions,
} from '../helpers/fault-proxy.js';
import {
  PLATE_B,
  plateObjects,
  readTree,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
  type GroundTruth,
} from '../helpers/fixtures.js';
import { coldDir, plateLines, tagOf } from '../helpers/restore.js';
import { getBytes } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer, type ServerSuite } from '../helpers/suite.js';

const P1: FixturePlate = { plateId: 'S1', plateIdFull: 'S1 Measurement 1' };

interface Case {
  live: string;
  cold: string;
  truth: GroundTruth;
  proxy: FaultProxy;
  run: (
    cmd: string,
    extra?: string[],
    o?: { plates?: FixturePlate[]; onSpawn?: (pid: number) => void },
  ) => ReturnType<typeof runCli>;
}

/** Uploads the plate, `glacier` keys with StorageClass GLACIER, and a runner through a proxy. */
async function sourcesCase(
  suite: ServerSuite,
  plate: FixturePlate,
  truth: GroundTruth,
  glacier: Set<string>,
  proxyOpts: FaultProxyOptions = { rate: 0 },
): Promise<Case> {
  const live = await suite.server.newBucket('live');
  const cold = await suite.server.newBucket('cold');
  await uploadAll(suite.client, live, new Map([...truth].filter(([k]) => !glacier.has(k))));
  for (const k of glacier)
    await suite.client.send(
      new PutObjectCommand({ Bucket: live, Key: k, Body: truth.get(k), StorageClass: 'GLACIER' }),
    );
  const proxy = await startFaultProxy(suite.server.endpoint, proxyOpts);
  const dir = await mkdtemp(join(suite.work, 'case-'));
  const csvs = new Map<string, string>();
  const run: Case['run'] = async (cmd, extra = [], o = {}) => {
    const plates = o.plates ?? [plate];
    const name = plates.map((p) => p.plateId).join('+');
    if (!csvs.has(name))
      csvs.set(name, await writePlatesCsv(plates, await mkdtemp(join(dir, 'csv-'))));
    return runCli(
      [
        cmd,
        ...plateArgs({ csv: csvs.get(name)!, live, cold }),
        ...(cmd === 'archive' ? ['--tmpdir', dir] : []),
        ...extra,
      ],
      { ...serverEnv(suite.server), AWS_ENDPOINT_URL: proxy.endpoint },
      o.onSpawn ? { onSpawn: o.onSpawn } : {},
    );
  };
  return { live, cold, truth, proxy, run };
}

/** Both tarballs extracted with GNU tar hold exactly the bytes the test uploaded. */
async function assertArchiveIsExact(
  suite: ServerSuite,
  c: Case,
  plate: FixturePlate,
  truth: GroundTruth = c.truth,
) {
  const x = await mkdtemp(join(suite.work, 'x-'));
  for (const t of ['images_illum_analysis', 'backend']) {
    const file = join(x, `${t}.tar.gz`);
    await writeFile(
      file,
      await getBytes(suite.client, c.cold, `${coldDir}${tagOf(plate)}_${t}.tar.gz`),
    );
    execFileSync('tar', ['xzf', file, '--strip-components=1', '-C', join(x)]);
  }
  const tree = await readTree(x);
  for (const t of ['images_illum_analysis', 'backend']) tree.delete(`${t}.tar.gz`);
  const expected = new Map(
    [...truth].filter(([k]) => !k.endsWith('/')).map(([k, v]) => [k.slice('projects/'.length), v]),
  );
  assert.deepEqual([...tree.keys()].sort(), [...expected.keys()].sort());
  for (const [path, bytes] of expected) assert.ok(tree.get(path)!.equals(bytes), `${path} differs`);
}

const keyOf = (path: string) => path.slice(path.indexOf('/') + 1);
const sizeOf = (truth: GroundTruth, keys: Iterable<string>) =>
  [...keys].reduce((n, k) => n + truth.get(k)!.length, 0);

async function ledgerLines(file: string): Promise<Record<string, string>[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.startsWith('{"key"'))
    .map((l) => JSON.parse(l) as Record<string, string>);
}

for (const name of testServerNames('glacier')) {
  describe(`restore of archived sources against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-rs-test-');
    const proxies: FaultProxy[] = [];
    after(async () => {
      for (const p of proxies) await p.close();
    });

    test('GLACIER sources: archive names them; request, wait, then a byte-exact archive', async () => {
      const truth = plateObjects(P1);
      const [images, illum, , backend] = sourcePrefixes(P1) as [string, string, string, string];
      const glacier = new Set([
        `${images}r01c01f01p01-ch1sk1fk1fl1.tiff`,
        `${illum}${P1.plateId}_IllumDNA.npy`,
        `${backend}${P1.plateId}.sqlite`,
      ]);
      const c = await sourcesCase(suite, P1, truth, glacier);
      proxies.push(c.proxy);

      const refused = await c.run('archive');
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(
        refused.stdout,
        /3 source object\(s\) are in an archive tier and need a restore first/,
      );
      for (const k of glacier) assert.ok(refused.stdout.includes(JSON.stringify(k)), `names ${k}`);

      const planned = await c.run('plan', ['--json']);
      assert.equal(planned.code, 0, planned.stderr);
      const [pl] = plateLines(planned.stdout);
      const bytes = sizeOf(truth, glacier);
      assert.deepEqual((pl!.details as Record<string, unknown>).restore, {
        objects: 3,
        bytes,
        inProgress: 0,
        byClass: { GLACIER: { objects: 3, bytes } },
      });
      assert.equal(
        pl!.message,
        `3 source object(s), ${bytes} bytes need a restore first (GLACIER: 3, ${bytes} bytes); see imgbackup restore-request --sources`,
      );

      const before = await c.run('restore-status', ['--sources', '--json']);
      assert.equal(before.code, 0, before.stderr);
      const [b] = plateLines(before.stdout);
      assert.equal(b!.status, 'not restored');
      assert.equal(b!.bytesIn, sizeOf(truth, glacier));
      assert.match(
        String(b!.message),
        new RegExp(
          `^${truth.size} source object\\(s\\): 3 archived, 0 restoring, ${truth.size - 3} readable, 0 error\\(s\\)`,
        ),
      );

      const dry = await c.run('restore-request', ['--sources', '--dry-run', '--json']);
      assert.equal(dry.code, 0, dry.stderr);
      const [d] = plateLines(dry.stdout);
      assert.equal(d!.status, 'planned');
      assert.match(
        String(d!.message),
        new RegExp(
          `^3 object\\(s\\), ${sizeOf(truth, glacier)} bytes from GLACIER: Standard 3-5 hours ~\\$0\\.00, Bulk 5-12 hours ~\\$0\\.00, Expedited 1-5 minutes ~\\$0\\.03 \\(prices as of `,
        ),
      );
      assert.equal(c.proxy.restores.length, 0, 'a dry run sends no RestoreObject');

      const ledger = join(suite.work, 'glacier-ledger.jsonl');
      const req = await c.run('restore-request', [
        '--sources',
        '--days',
        '2',
        '--ledger',
        ledger,
        '--json',
      ]);
      assert.equal(req.code, 0, req.stderr);
      assert.equal(plateLines(req.stdout)[0]!.status, 'requested');
      assert.deepEqual(c.proxy.restores.map((r) => keyOf(r.path)).sort(), [...glacier].sort());
      for (const r of c.proxy.restores) {
        assert.match(r.body, /<Days>2<\/Days>/);
        assert.match(
          r.body,
          /<GlacierJobParameters><Tier>Standard<\/Tier><\/GlacierJobParameters>/,
        );
      }
      const lines = await ledgerLines(ledger);
      assert.deepEqual(
        lines.map((l) => [l.key, l.status, l.tier]).sort(),
        [...glacier].sort().map((k) => [k, 'requested', 'Standard']),
      );

      const waited = await c.run('restore-status', [
        '--sources',
        '--wait',
        '--timeout',
        '1m',
        '--json',
      ]);
      assert.equal(waited.code, 0, waited.stderr);
      assert.equal(plateLines(waited.stdout)[0]!.status, 'readable');

      const archived = await c.run('archive');
      assert.equal(archived.code, 0, archived.stderr + archived.stdout);
      await assertArchiveIsExact(suite, c, P1);
    });

    test('Intelligent-Tiering archive tiers (emulated): no Days, Expedited refused, then archived', async () => {
      const plate = PLATE_B;
      const truth = plateObjects(plate);
      const [images, , analysis] = sourcePrefixes(plate) as [string, string, string];
      const deep = [`${images}Index.idx.xml`, `${analysis}A01-1/Cells.csv`];
      const archivedSet = new Set<string>();
      const c = await sourcesCase(suite, plate, truth, new Set(), {
        rate: 0,
        tiering: { archived: archivedSet, status: 'DEEP_ARCHIVE_ACCESS' },
      });
      proxies.push(c.proxy);
      for (const k of deep) archivedSet.add(`${c.live}/${k}`);

      const refused = await c.run('archive');
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stdout, /2 source object\(s\) are in an archive tier/);
      for (const k of deep) assert.ok(refused.stdout.includes(JSON.stringify(k)), `names ${k}`);

      const planned = await c.run('plan', ['--json']);
      assert.equal(planned.code, 0, planned.stderr);
      const bytes = sizeOf(truth, deep);
      assert.deepEqual(
        (plateLines(planned.stdout)[0]!.details as Record<string, unknown>).restore,
        {
          objects: 2,
          bytes,
          inProgress: 0,
          byClass: { IT_DEEP_ARCHIVE: { objects: 2, bytes } },
        },
      );

      const expedited = await c.run('restore-request', ['--sources', '--tier', 'Expedited']);
      assert.equal(expedited.code, 2);
      const errLines = expedited.stderr.trim().split('\n');
      assert.equal(errLines.length, 1, expedited.stderr);
      assert.match(
        errLines[0]!,
        /--tier Expedited is not offered for IT_DEEP_ARCHIVE \(s3:\/\/.*\); use --tier Standard or Bulk/,
      );
      assert.equal(c.proxy.restores.length, 0, 'nothing requested');

      const req = await c.run('restore-request', ['--sources', '--json']);
      assert.equal(req.code, 0, req.stderr);
      assert.equal(plateLines(req.stdout)[0]!.status, 'requested');
      assert.deepEqual(c.proxy.restores.map((r) => keyOf(r.path)).sort(), [...deep].sort());
      for (const r of c.proxy.restores) {
        assert.doesNotMatch(r.body, /<Days>/, 'Intelligent-Tiering refuses Days');
        assert.match(
          r.body,
          /<GlacierJobParameters><Tier>Standard<\/Tier><\/GlacierJobParameters>/,
        );
      }

      const waited = await c.run('restore-status', [
        '--sources',
        '--wait',
        '--poll',
        '1s',
        '--timeout',
        '1m',
        '--json',
      ]);
      assert.equal(waited.code, 0, waited.stderr);
      assert.match(
        waited.stderr,
        /restore-status: 1 plate\(s\) not readable yet \(2058: restoring\); next look in 1 s/,
      );
      const [w] = plateLines(waited.stdout);
      assert.equal(w!.status, 'readable');

      const archived = await c.run('archive');
      assert.equal(archived.code, 0, archived.stderr + archived.stdout);
      await assertArchiveIsExact(suite, c, plate);
    });

    test('a ledger resumes after kill -9: finished keys are not asked again, errors are retried', async () => {
      const truth = plateObjects(P1);
      const [images] = sourcePrefixes(P1) as [string];
      const glacier = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const k = `${images}cold/f${String(i).padStart(2, '0')}.tif`;
        truth.set(k, Buffer.from(`cold file ${i}\n`));
        glacier.add(k);
      }
      const phase = { n: 1, restores: 0 };
      const denied = new Set<string>();
      const seen: { phase: number; method: string; path: string }[] = [];
      const c = await sourcesCase(suite, P1, truth, glacier, {
        rate: 0,
        onRequest: (req) => {
          const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
          seen.push({ phase: phase.n, method: req.method ?? '', path });
          if (phase.n !== 1 || req.method !== 'POST') return;
          phase.restores += 1;
          if (phase.restores <= 2) denied.add(path);
          // the rest never get an answer: the run is killed with them in flight
          if (phase.restores > 7) return new Promise<void>(() => {});
        },
        answer: (req) =>
          phase.n === 1 &&
          req.method === 'POST' &&
          denied.has(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1)))
            ? { status: 403, code: 'AccessDenied', message: 'Access Denied' }
            : undefined,
      });
      proxies.push(c.proxy);
      const ledger = join(suite.work, 'kill-ledger.jsonl');

      let pid = 0;
      const killed = c.run('restore-request', ['--sources', '--ledger', ledger], {
        onSpawn: (p) => (pid = p),
      });
      for (let i = 0; i < 400 && (await ledgerLines(ledger)).length < 7; i++)
        await new Promise((r) => setTimeout(r, 50));
      process.kill(pid, 'SIGKILL');
      assert.equal((await killed).signal, 'SIGKILL');
      const first = await ledgerLines(ledger);
      const done = first.filter((l) => l.status === 'requested').map((l) => l.key);
      assert.equal(done.length, 5);
      assert.deepEqual(
        first
          .filter((l) => l.status === 'error')
          .map((l) => l.key)
          .sort(),
        [...denied].map(keyOf).sort(),
      );

      // the ledger's errors, counted for the keys still archived
      const status = await c.run('restore-status', ['--sources', '--ledger', ledger, '--json']);
      assert.equal(status.code, 0, status.stderr);
      assert.match(
        String(plateLines(status.stdout)[0]!.message),
        new RegExp(
          `^${truth.size} source object\\(s\\): 7 archived, 0 restoring, ${truth.size - 7} readable, 2 error\\(s\\)`,
        ),
      );

      phase.n = 2;
      const again = await c.run('restore-request', ['--sources', '--ledger', ledger, '--json']);
      assert.equal(again.code, 0, again.stderr + again.stdout);
      const second = seen
        .filter((s) => s.phase === 2 && s.path.startsWith(`${c.live}/`))
        .map((s) => ({ ...s, key: keyOf(s.path) }));
      // keys the ledger has as requested: neither HEAD nor RestoreObject again
      for (const k of done) assert.ok(!second.some((s) => s.key === k), `${k} was asked again`);
      const asked = second
        .filter((s) => s.method === 'POST')
        .map((s) => s.key)
        .sort();
      assert.deepEqual(asked, [...glacier].filter((k) => !done.includes(k)).sort());
      const last = new Map((await ledgerLines(ledger)).map((l) => [l.key, l.status]));
      for (const k of glacier) assert.equal(last.get(k), 'requested', k);

      // the same ledger for another plate set: one line, exit 2, nothing requested
      const before = c.proxy.restores.length;
      const other = await c.run('restore-request', ['--sources', '--ledger', ledger], {
        plates: [P1, PLATE_B],
      });
      assert.equal(other.code, 2);
      const errLines = other.stderr.trim().split('\n');
      assert.equal(errLines.length, 1, other.stderr);
      assert.match(
        errLines[0]!,
        /--ledger .*kill-ledger\.jsonl was written for sources of plates .*S1 in s3:\/\/.*, not for this run's .*; use a new ledger file/,
      );
      assert.equal(c.proxy.restores.length, before);
    });

    test('a listing that answers RestoreStatus spares the HEADs: restore-status asks for it and trusts it', async () => {
      const truth = plateObjects(P1);
      const [images] = sourcePrefixes(P1) as [string];
      const glacier = new Set<string>();
      for (let i = 0; i < 3; i++) {
        const k = `${images}old/f${i}.tif`;
        truth.set(k, Buffer.from(`old file ${i}\n`));
        glacier.add(k);
      }
      const [restored1, restored2, untouched] = [...glacier] as [string, string, string];
      const restored = new Set([restored1, restored2]);
      const seen: { method: string; key: string; optional?: string }[] = [];
      const c = await sourcesCase(suite, P1, truth, glacier, {
        rate: 0,
        onRequest: (req) => {
          const u = new URL(req.url ?? '/', 'http://x');
          const path = decodeURIComponent(u.pathname.slice(1));
          const opt = req.headers['x-amz-optional-object-attributes'];
          seen.push({
            method: req.method ?? '',
            key: keyOf(path),
            ...(typeof opt === 'string' ? { optional: opt } : {}),
          });
        },
        // What AWS S3 answers and moto does not: RestoreStatus of the objects with a restore
        rewrite: (req) =>
          req.method === 'GET' && (req.url ?? '').includes('list-type=2')
            ? (xml) =>
                xml.replace(/<Contents>([\s\S]*?)<\/Contents>/g, (all, inner: string) => {
                  const key = (/<Key>([^<]*)<\/Key>/.exec(inner) ?? [])[1] ?? '';
                  return restored.has(key)
                    ? `<Contents>${inner}<RestoreStatus><IsRestoreInProgress>${key === restored1}</IsRestoreInProgress>${key === restored2 ? '<RestoreExpiryDate>2030-01-01T00:00:00.000Z</RestoreExpiryDate>' : ''}</RestoreStatus></Contents>`
                    : all;
                })
            : undefined,
      });
      proxies.push(c.proxy);
      const r = await c.run('restore-status', ['--sources', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const [line] = plateLines(r.stdout);
      assert.equal(line!.status, 'not restored');
      assert.match(
        String(line!.message),
        new RegExp(
          `: 1 archived, 1 restoring, ${truth.size - 2} readable, 0 error\\(s\\); not requested: ${JSON.stringify(untouched).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`,
        ),
      );
      const heads = seen.filter((s) => s.method === 'HEAD' && s.key.startsWith('projects/'));
      assert.deepEqual(heads, [], 'no HEAD of any source object');
      const lists = seen.filter((s) => s.method === 'GET' && s.optional !== undefined);
      assert.equal(lists.length, 4, 'each of the four sources listed with RestoreStatus asked for');
      for (const l of lists) assert.equal(l.optional, 'RestoreStatus');
    });

    test('--prefix: data outside plates, --include / --exclude, the same ledger; bad input is one line and nothing requested', async () => {
      const live = await suite.server.newBucket('data');
      const glacier = [
        'data/run1/a.tif',
        'data/run1/sub/b.tif',
        'data/run1/c.csv',
        'data/skip/d.tif',
      ];
      for (const k of glacier)
        await suite.client.send(
          new PutObjectCommand({
            Bucket: live,
            Key: k,
            Body: `bytes of ${k}\n`,
            StorageClass: 'GLACIER',
          }),
        );
      await suite.client.send(
        new PutObjectCommand({ Bucket: live, Key: 'data/run1/e.tif', Body: 'readable\n' }),
      );
      await suite.client.send(
        new PutObjectCommand({
          Bucket: live,
          Key: 'deep/f.tif',
          Body: 'deep\n',
          StorageClass: 'DEEP_ARCHIVE',
        }),
      );
      const proxy = await startFaultProxy(suite.server.endpoint, { rate: 0 });
      proxies.push(proxy);
      const env = { ...serverEnv(suite.server), AWS_ENDPOINT_URL: proxy.endpoint };
      const ledger = join(suite.work, 'prefix-ledger.jsonl');
      const run = (args: string[]) => runCli(['restore-request', ...args], env);
      const filters = ['--include', '**/*.tif', '--exclude', 'skip/**'];

      const r = await run([
        '--prefix',
        `s3://${live}/data/`,
        ...filters,
        '--ledger',
        ledger,
        '--json',
      ]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const [line] = plateLines(r.stdout);
      assert.equal(line!.plateId, `s3://${live}/data/`);
      assert.equal(line!.status, 'requested');
      const wanted = ['data/run1/a.tif', 'data/run1/sub/b.tif'];
      assert.deepEqual(proxy.restores.map((x) => keyOf(x.path)).sort(), wanted);
      for (const x of proxy.restores) assert.match(x.body, /<Days>7<\/Days>/);
      assert.deepEqual(
        (await ledgerLines(ledger)).map((l) => [l.key, l.status]).sort(),
        wanted.map((k) => [k, 'requested']),
      );

      const again = await run([
        '--prefix',
        `s3://${live}/data/`,
        ...filters,
        '--ledger',
        ledger,
        '--json',
      ]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(proxy.restores.length, 2, 'nothing asked again');

      const bad: [string[], RegExp][] = [
        [
          ['--prefix', 's3://no-such-bucket-for-imgbackup/data/'],
          /^imgbackup: .*s3:\/\/no-such-bucket-for-imgbackup: bucket does not exist/,
        ],
        [
          ['--prefix', `s3://${live}/data/run1/`, '--ledger', ledger],
          /--ledger .*prefix-ledger\.jsonl was written for s3:\/\/.*\/data\/ --include "\*\*\/\*\.tif" --exclude "skip\/\*\*", not for this run's s3:\/\/.*\/data\/run1\/; use a new ledger file/,
        ],
        [
          ['--prefix', `s3://${live}/deep/`, '--tier', 'Expedited'],
          /--tier Expedited is not offered for DEEP_ARCHIVE \(s3:\/\/.*\/deep\/f\.tif\)/,
        ],
        [
          ['--prefix', `s3://${live}/nothing-here/`],
          /--prefix s3:\/\/.*\/nothing-here\/: no objects under it; check the prefix/,
        ],
      ];
      for (const [args, message] of bad) {
        const b = await run(args);
        assert.equal(b.code, 2, `${args.join(' ')}: ${b.stderr}`);
        const lines = b.stderr.trim().split('\n');
        assert.equal(lines.length, 1, b.stderr);
        assert.match(lines[0]!, message);
        assert.equal(proxy.restores.length, 2, `${args.join(' ')}: nothing requested`);
      }
    });

    test('archive --restore-sources: archives at once what needs nothing, says what to re-run, and with --wait archives the rest', async () => {
      const truth = plateObjects(P1);
      const [images, illum] = sourcePrefixes(P1) as [string, string];
      const deep = [`${images}Index.idx.xml`, `${illum}${P1.plateId}_IllumDNA.npy`];
      const archivedSet = new Set<string>();
      const c = await sourcesCase(suite, P1, truth, new Set(), {
        rate: 0,
        // in progress for the look of run 2's request and for its first status look
        tiering: { archived: archivedSet, status: 'ARCHIVE_ACCESS', headsInProgress: 2 },
      });
      proxies.push(c.proxy);
      for (const k of deep) archivedSet.add(`${c.live}/${k}`);
      const truthB = plateObjects(PLATE_B);
      await uploadAll(suite.client, c.live, truthB);
      const both = { plates: [P1, PLATE_B] };

      const first = await c.run('archive', ['--restore-sources', '--json'], both);
      assert.equal(first.code, 75, first.stderr + first.stdout);
      const [b1, p1] = plateLines(first.stdout);
      assert.equal(b1!.plateId, PLATE_B.plateId);
      assert.equal(b1!.status, 'archived');
      assert.equal(p1!.status, 'waiting');
      assert.match(
        String(p1!.message),
        /2 restore\(s\) requested \(Standard\), 0 in progress; .*run this same imgbackup archive --restore-sources again once imgbackup restore-status --sources says readable \(archived plates are skipped\), or add --wait/,
      );
      assert.deepEqual(c.proxy.restores.map((r) => keyOf(r.path)).sort(), [...deep].sort());
      await assertArchiveIsExact(suite, c, PLATE_B, truthB);

      const second = await c.run(
        'archive',
        ['--restore-sources', '--wait', '--poll', '1s', '--timeout', '1m', '--json'],
        both,
      );
      assert.equal(second.code, 0, second.stderr + second.stdout);
      const [b2, p2] = plateLines(second.stdout);
      assert.equal(b2!.status, 'skipped');
      assert.equal(p2!.status, 'archived');
      assert.match(
        second.stderr,
        /archive: 1 plate\(s\) waiting for source restores; next look in 1 s/,
      );
      assert.equal(c.proxy.restores.length, 2, 'restores in progress are not asked again');
      await assertArchiveIsExact(suite, c, P1);
    });

    test('503 GlacierExpeditedRetrievalNotAvailable is an error in the ledger, retried by the re-run alone', async () => {
      const live = await suite.server.newBucket('busy');
      const keys = ['busy/a.tif', 'busy/b.tif'];
      for (const k of keys)
        await suite.client.send(
          new PutObjectCommand({ Bucket: live, Key: k, Body: `${k}\n`, StorageClass: 'GLACIER' }),
        );
      const busy = { on: true };
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        answer: (req) =>
          busy.on && req.method === 'POST' && (req.url ?? '').includes('a.tif')
            ? {
                status: 503,
                code: 'GlacierExpeditedRetrievalNotAvailable',
                message: 'Glacier expedited retrievals are currently not available',
              }
            : undefined,
      });
      proxies.push(proxy);
      const env = { ...serverEnv(suite.server), AWS_ENDPOINT_URL: proxy.endpoint };
      const ledger = join(suite.work, 'busy-ledger.jsonl');
      const args = [
        'restore-request',
        '--prefix',
        `s3://${live}/busy/`,
        '--tier',
        'Expedited',
        '--ledger',
        ledger,
        '--max-attempts',
        '1',
        '--json',
      ];
      const r = await runCli(args, env);
      assert.equal(r.code, 1, r.stderr + r.stdout);
      assert.match(
        String(plateLines(r.stdout)[0]!.message),
        /^1 of 2 restore request\(s\) failed \(Expedited capacity not available now \(503\); run again later or with --tier Standard\): "busy\/a\.tif"; run again with the same --ledger to retry only those$/,
      );
      assert.deepEqual((await ledgerLines(ledger)).map((l) => [l.key, l.status]).sort(), [
        ['busy/a.tif', 'error'],
        ['busy/b.tif', 'requested'],
      ]);
      busy.on = false;
      const before = proxy.restores.length;
      const again = await runCli(args, env);
      assert.equal(again.code, 0, again.stderr + again.stdout);
      assert.deepEqual(
        proxy.restores.slice(before).map((x) => keyOf(x.path)),
        ['busy/a.tif'],
      );
    });
  });
}
