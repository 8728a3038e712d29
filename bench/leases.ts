// Bench figure for the plate leases (issue 15): the same plates archived by one process
// (--max-procs 4) and by 4 shard workers (--shard i/4, --max-procs 1) at once, both under S3
// leases, on a store that passes the lease probe (radosgw or moto); wall time, CPU, and the
// lease requests each run made. Each run archives into a fresh cold bucket after the live
// bucket's backup folder was emptied, so both do the same work.
// Usage: [BALANCED=0] node dist/bench/leases.js ENDPOINT [PLATES=8] [PLATE_MB=40] [REPEAT=2]
//   (moto: bash scripts/moto-start.sh DIR; radosgw: bash scripts/rgw-start.sh DIR)
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CreateBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { shardOf } from '../src/plates/shard.js';
import { fileBytes, makeBases, MB, planPlate, type PlateIds } from './data.js';

const [endpoint, platesArg = '8', mbArg = '40', repeatArg = '2'] = process.argv.slice(2);
if (!endpoint) throw new Error('usage: leases.js ENDPOINT [PLATES] [PLATE_MB] [REPEAT]');
const PROJECT = '2099_Bench_IMGBACKUP';
const BATCH = 'BENCH01';
const WORKERS = 4;
const env = {
  AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID ?? 'bench',
  AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY ?? 'bench',
  AWS_REGION: 'us-east-1',
};
const client = new S3Client({
  endpoint,
  region: env.AWS_REGION,
  forcePathStyle: true,
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
  credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
});
const stamp = Date.now().toString(36);
const live = `bench-leases-live-${stamp}`;
await client.send(new CreateBucketCommand({ Bucket: live }));

// Plate ids taken in order, skipping those whose shard already has its share: with equal shards
// the comparison shows what the leases and the extra processes cost, not the hash's luck
// (BALANCED=0 takes the first ids as they come).
const balanced = process.env.BALANCED !== '0';
const perShard = Math.ceil(Number(platesArg) / WORKERS);
const taken = new Array<number>(WORKERS).fill(0);
const plates: PlateIds[] = [];
for (let i = 0; plates.length < Number(platesArg); i++) {
  const id = `BR${String(200001 + i).padStart(8, '0')}`;
  const s = shardOf(id, WORKERS);
  if (balanced && taken[s]! >= perShard) continue;
  taken[s] = taken[s]! + 1;
  plates.push({ plateId: id, plateIdFull: id });
}
const bases = makeBases();
const files = plates.flatMap((p, i) => planPlate(PROJECT, BATCH, p, Number(mbArg) * MB, 2000 + i));
let next = 0;
await Promise.all(
  Array.from({ length: 8 }, async () => {
    while (next < files.length) {
      const f = files[next++]!;
      await client.send(
        new PutObjectCommand({ Bucket: live, Key: f.key, Body: fileBytes(bases, f) }),
      );
    }
  }),
);
const sourceBytes = files.reduce((n, f) => n + f.size, 0);
const work = mkdtempSync(join(tmpdir(), 'imgbackup-bench-leases-'));
const csv = join(work, 'plates.csv');
writeFileSync(
  csv,
  `plate_id,plate_id_full\n${plates.map((p) => `${p.plateId},${p.plateIdFull}`).join('\n')}\n`,
);
const bin = fileURLToPath(new URL('../../bin/imgbackup.js', import.meta.url));

/** Empties the live bucket's backup folder: a second run must archive again, not skip. */
async function clearBackups(): Promise<void> {
  const page = await client.send(
    new ListObjectsV2Command({ Bucket: live, Prefix: `projects/${PROJECT}/workspace/backup/` }),
  );
  const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
  if (keys.length > 0)
    await client.send(new DeleteObjectsCommand({ Bucket: live, Delete: { Objects: keys } }));
}

interface Proc {
  code: number | null;
  cpuSeconds: number;
  leaseLines: number;
  stderr: string;
}

/** One CLI process under /usr/bin/time: its exit, CPU seconds, and the lease lines it logged. */
function run(args: string[], logDir: string): Promise<Proc> {
  return new Promise((resolve) => {
    const child = spawn(
      '/usr/bin/time',
      ['-f', 'cpu=%U+%S', process.execPath, bin, ...args, '--log-dir', logDir, '--verbose'],
      { env: { ...process.env, ...env, AWS_ENDPOINT_URL: endpoint } },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.resume();
    child.on('close', (code) => {
      const m = /cpu=([\d.]+)\+([\d.]+)/.exec(err);
      resolve({
        code,
        cpuSeconds: m ? Number(m[1]) + Number(m[2]) : NaN,
        leaseLines: err.split('\n').filter((l) => /lease/i.test(l)).length,
        stderr: err.slice(-2000),
      });
    });
  });
}

async function variant(name: string, shards: boolean, round: number) {
  await clearBackups();
  const cold = `bench-leases-cold-${stamp}-${name}-${round}`;
  await client.send(new CreateBucketCommand({ Bucket: cold }));
  const base = [
    'archive',
    '--plates',
    csv,
    '--project-name',
    PROJECT,
    '--batch-id',
    BATCH,
    '--bucket',
    live,
    '--cold-bucket',
    cold,
    '--stream',
  ];
  const started = performance.now();
  const procs = await Promise.all(
    shards
      ? Array.from({ length: WORKERS }, (_, i) =>
          run(
            [...base, '--shard', `${i}/${WORKERS}`, '--max-procs', '1'],
            join(work, `${name}-${round}-${i}`),
          ),
        )
      : [run([...base, '--max-procs', String(WORKERS)], join(work, `${name}-${round}`))],
  );
  const wall = (performance.now() - started) / 1000;
  const failed = procs.filter((p) => p.code !== 0);
  if (failed.length > 0) throw new Error(`${name}: exit ${failed[0]!.code}: ${failed[0]!.stderr}`);
  return { name, round, wall, cpu: procs.reduce((n, p) => n + p.cpuSeconds, 0) };
}

const rows: Awaited<ReturnType<typeof variant>>[] = [];
for (let round = 1; round <= Number(repeatArg); round++) {
  rows.push(await variant('one process --max-procs 4', false, round));
  rows.push(await variant(`${WORKERS} shard workers`, true, round));
}
const best = (name: string) =>
  rows.filter((r) => r.name === name).reduce((a, b) => (b.wall < a.wall ? b : a));
const one = best('one process --max-procs 4');
const four = best(`${WORKERS} shard workers`);
console.log(`plates per shard: ${taken.join(', ')}`);
console.log(
  `${plates.length} plates x ${mbArg} MB = ${(sourceBytes / MB).toFixed(0)} MB, ${files.length} objects; fastest of ${repeatArg}`,
);
for (const r of [one, four])
  console.log(`${r.name.padEnd(28)} wall ${r.wall.toFixed(1)} s  CPU ${r.cpu.toFixed(1)} s`);
console.log(`all runs: ${rows.map((r) => `${r.name} ${r.wall.toFixed(1)} s`).join('; ')}`);
console.log(`shard workers / one process: wall ${(four.wall / one.wall).toFixed(3)}x`);
console.log(JSON.stringify({ plates: plates.length, plateMb: Number(mbArg), rows }));
