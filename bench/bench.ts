// `npm run bench`: imgbackup archive against the workflow it replaces, side by side, on the same
// synthetic plates in an in-process s3rver. See bench/README.md.
import { spawnSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { cpus, totalmem, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  BATCH,
  CLI,
  CREDS,
  fmt,
  layoutTable,
  LIVE,
  listAll,
  log,
  mb,
  pool,
  printTargets,
  PROJECT,
  REPO,
  s3client,
  type Target,
} from './common.js';
import {
  fileBytes,
  makeBases,
  mixStats,
  MB,
  planPlate,
  type PlanFile,
  type PlateIds,
} from './data.js';
import { current, measure, SAMPLE_MS, tail } from './measure.js';
import {
  addRestoreRatios,
  checkRestored,
  cpuPerGB,
  IMGBACKUP_RESTORE,
  imgbackupRestoreArgs,
  OLD_RESTORE,
  oldRestoreArgs,
  restoreTable,
  restoreTargets,
  type RestoreRow,
} from './restore.js';
import { threadFigures, threadTable, type ThreadFigures } from './threads.js';
import { parseLink, startLink, type LinkOptions } from './link.js';

const INSTALL_HINT = 'install with `apt-get update && apt-get install -y parallel pigz`';
const UPLOAD_CONCURRENCY = 8;

const USAGE = `Usage: npm run bench -- [options]
  --plates N        plates to generate (default 2)
  --plate-mb M      MB (10^6 bytes) per plate (default 400)
  --max-procs N     plates at once, for every variant (default 2)
  --out FILE        JSON results (default bench-results/bench.json); logs go beside it
  --skip-old        skip the old aws_backup.sh workflow
  --skip-pigz       skip the hand-rolled aws s3 sync + tar | pigz variant
  --skip-extra      skip the extra imgbackup variants (--compression-level 6, --stream, --no-compress,
                    --gzip-engine libdeflate, --gzip-engine zlib)
  --skip-restore    skip the restores (imgbackup restore --to-s3 and the old runbook's restore of
                    the imgbackup run's tarballs)
  --only NAMES      run only these variants (comma-separated names as in the table, e.g.
                    "imgbackup libdeflate,old aws_backup.sh" or "imgbackup restore,old restore");
                    imgbackup itself always runs
  --workdir DIR     where the S3 data and tmpdirs live (default: a new dir under $TMPDIR)
  --repeat N        run every variant N times (in rounds) and report each one's fastest run
  --image-mb A-B    image sizes, MB (default 1-8; real 16-bit 2160 x 2160 images are ~9.3)
  --link MS,MBPS    the commands reach the server through an emulated S3 link: each answer
                    waits MS ms for its first byte and moves at most MBPS MB/s (default: none,
                    loopback)
  --keep            keep the workdir (S3 data, buckets) afterwards`;

interface Options {
  plates: number;
  plateMb: number;
  maxProcs: number;
  out: string;
  skipOld: boolean;
  skipPigz: boolean;
  skipExtra: boolean;
  skipRestore: boolean;
  only?: string[];
  workdir?: string;
  keep: boolean;
  repeat: number;
  imageBytes: [number, number];
  link?: LinkOptions;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      plates: { type: 'string', default: '2' },
      'plate-mb': { type: 'string', default: '400' },
      'max-procs': { type: 'string', default: '2' },
      out: { type: 'string', default: 'bench-results/bench.json' },
      'skip-old': { type: 'boolean', default: false },
      'skip-pigz': { type: 'boolean', default: false },
      'skip-extra': { type: 'boolean', default: false },
      'skip-restore': { type: 'boolean', default: false },
      only: { type: 'string' },
      workdir: { type: 'string' },
      keep: { type: 'boolean', default: false },
      repeat: { type: 'string', default: '1' },
      'image-mb': { type: 'string', default: '1-8' },
      link: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) {
      console.error(`bench: --${name} takes a number >= ${min}, got ${JSON.stringify(v)}`);
      process.exit(2);
    }
    return n;
  };
  const images = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(values['image-mb']);
  const [lo, hi] = images ? [Number(images[1]) * MB, Number(images[2]) * MB] : [0, 0];
  if (!images || lo < 0.1 * MB || hi < lo) {
    console.error(`bench: --image-mb takes MIN-MAX in MB, e.g. 9-10, got ${values['image-mb']}`);
    process.exit(2);
  }
  const link = values.link === undefined ? undefined : parseLink(values.link);
  if (values.link !== undefined && !link) {
    console.error(`bench: --link takes MS,MBPS, e.g. 30,25, got ${JSON.stringify(values.link)}`);
    process.exit(2);
  }
  return {
    imageBytes: [lo, hi],
    ...(link ? { link } : {}),
    plates: Math.floor(num('plates', values.plates, 1)),
    plateMb: num('plate-mb', values['plate-mb'], 10),
    maxProcs: Math.floor(num('max-procs', values['max-procs'], 1)),
    out: resolve(values.out),
    skipOld: values['skip-old'],
    skipPigz: values['skip-pigz'],
    skipExtra: values['skip-extra'],
    skipRestore: values['skip-restore'],
    ...(values.only ? { only: values.only.split(',').map((n) => n.trim()) } : {}),
    ...(values.workdir ? { workdir: resolve(values.workdir) } : {}),
    keep: values.keep,
    repeat: Math.floor(num('repeat', values.repeat, 1)),
  };
}

// ---------- s3rver ----------

interface S3rverLike {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
}
type S3rverCtor = new (opts: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
}) => S3rverLike;

async function startS3rver(dir: string, buckets: string[]) {
  // s3rver ships no types; the module name is a variable so this file does not depend on the
  // declaration the tests keep for it.
  const name = 's3rver';
  const mod = (await import(name)) as { default: S3rverCtor };
  const server = new mod.default({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: buckets.map((b) => ({ name: b })),
  });
  const { port } = await server.run();
  return { server, endpoint: `http://127.0.0.1:${port}` };
}

// ---------- tools ----------

function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

function toolVersion(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `${cmd} 2>&1 | head -n 1`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() || undefined : undefined;
}

function missingTools(tools: string[]): string | undefined {
  const missing = tools.filter((t) => !have(t));
  if (missing.length === 0) return undefined;
  return `${missing.join(', ')} not found: ${INSTALL_HINT}`;
}

// ---------- imgbackup log phases ----------

interface PlatePhases {
  plateId: string;
  /** Seconds from the plate's start to each logged event. */
  events: { at: number; msg: string; detail?: string }[];
  seconds?: number;
}

/** Per plate: what its --log-dir log says happened when, from the job log's start time. */
function imgbackupPhases(logDir: string): PlatePhases[] {
  const joblog = join(logDir, 'archive.joblog');
  if (!existsSync(joblog)) return [];
  const out: PlatePhases[] = [];
  for (const line of readFileSync(joblog, 'utf8').trim().split('\n').slice(1)) {
    const cols = line.split('\t');
    const start = Number(cols[2]) * 1000;
    const plateId = cols[8] ?? '';
    const phases: PlatePhases = { plateId, events: [], seconds: Number(cols[3]) };
    const file = join(logDir, `${plateId}.log`);
    if (existsSync(file)) {
      for (const l of readFileSync(file, 'utf8').split('\n')) {
        if (!l.trim()) continue;
        try {
          const j = JSON.parse(l) as Record<string, unknown>;
          const detail = (j.tarball ??
            j.key ??
            (j.bytes ? `${String(j.bytes)} bytes` : undefined)) as string | undefined;
          phases.events.push({
            at: (Number(j.time) - start) / 1000,
            msg: String(j.msg),
            ...(detail
              ? {
                  detail: String(detail)
                    .split('/')
                    .pop()!
                    .replace(`${PROJECT}_${BATCH}_${plateId}_`, ''),
                }
              : {}),
          });
        } catch {
          // not JSON
        }
      }
    }
    out.push(phases);
  }
  return out;
}

// ---------- variants ----------

interface Variant {
  name: string;
  description: string;
  cold: string;
  cmd: string;
  args: (ctx: RunContext) => string[];
  skip?: string;
  isImgbackup: boolean;
  /** A restore: the tarballs in `cold` (the imgbackup run's) go back into this empty bucket. */
  restoreTo?: string;
}

interface RunContext {
  endpoint: string;
  platesCsv: string;
  tmpdir: string;
  logDir: string;
  maxProcs: number;
}

interface VariantResult extends RestoreRow {
  name: string;
  description: string;
  command?: string;
  skipped?: string;
  failed?: string;
  exitCode?: number;
  wallSeconds?: number;
  sourceMBps?: number;
  peakTmpdirBytes?: number;
  peakRssBytes?: number;
  peakProcesses?: number;
  cpuSeconds?: number;
  serverCpuSeconds?: number;
  otherCpuSeconds?: number;
  tarballBytes?: number;
  tarballs?: number;
  tmpdirOverTarball?: number;
  listingsMatch?: boolean;
  ratiosToImgbackup?: Record<string, number>;
  phases?: PlatePhases[];
  threadCpu?: ThreadFigures;
  logs?: string;
  round?: number;
  runs?: { round: number; wallSeconds: number; otherCpuSeconds: number; failed?: string }[];
  /** Restores: the bucket restored into, and what the byte check against the sources found. */
  restoredTo?: string;
  restoreProblems?: { count: number; first: string[] };
}

const imgbackupArgs =
  (cold: string, extra: string[] = []) =>
  (c: RunContext) => [
    CLI,
    'archive',
    '--plates',
    c.platesCsv,
    '--project-name',
    PROJECT,
    '--batch-id',
    BATCH,
    '--bucket',
    LIVE,
    '--cold-bucket',
    cold,
    '--tmpdir',
    c.tmpdir,
    '--max-procs',
    String(c.maxProcs),
    '--endpoint-url',
    c.endpoint,
    '--log-dir',
    c.logDir,
    ...extra,
  ];

const scriptArgs = (cold: string) => (c: RunContext) => [
  '--plates',
  c.platesCsv,
  '--project_name',
  PROJECT,
  '--batch_id',
  BATCH,
  '--bucket',
  LIVE,
  '--cold_bucket',
  cold,
  '--tmpdir',
  c.tmpdir,
  '--max_procs',
  String(c.maxProcs),
  '--endpoint_url',
  c.endpoint,
  '--log_dir',
  c.logDir,
];

function cliHelp(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: REPO });
  return `${r.stdout}${r.stderr}`;
}

// ---------- output ----------

function table(results: VariantResult[]): string {
  const head = [
    'variant',
    'wall s',
    'src MB/s',
    'peak tmpdir MB',
    'tmpdir/tarball',
    'peak RSS MB',
    'CPU s',
    'tarball MB',
    'wall x',
    'tmpdir x',
    'RSS x',
    'CPU x',
    'tarball x',
    's3rver CPU s',
    'other CPU s',
  ];
  const rows = results.map((r) => {
    if (r.skipped || r.failed)
      return [r.name, r.skipped ? `skipped: ${r.skipped}` : `FAILED: ${r.failed}`];
    const x = r.ratiosToImgbackup ?? {};
    return [
      r.name,
      fmt(r.wallSeconds),
      fmt(r.sourceMBps),
      fmt(mb(r.peakTmpdirBytes)),
      fmt(r.tmpdirOverTarball, 2),
      fmt(mb(r.peakRssBytes)),
      fmt(r.cpuSeconds),
      fmt(mb(r.tarballBytes)),
      fmt(x.wall, 2),
      fmt(x.tmpdir, 2),
      fmt(x.rss, 2),
      fmt(x.cpu, 2),
      fmt(x.tarball, 3),
      fmt(r.serverCpuSeconds),
      fmt(r.otherCpuSeconds),
    ];
  });
  return layoutTable(head, rows);
}

// ---------- main ----------

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  try {
    createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
  } catch {
    log('s3rver needs OpenSSL legacy ciphers for list pagination: run through `npm run bench`');
    log('(it starts node with --openssl-legacy-provider)');
    process.exit(2);
  }
  if (!existsSync(CLI)) throw new Error(`${CLI} not found`);

  const resultsDir = dirname(opts.out);
  const logsRoot = join(resultsDir, 'logs');
  rmSync(logsRoot, { recursive: true, force: true });
  mkdirSync(logsRoot, { recursive: true });

  if (opts.workdir) mkdirSync(opts.workdir, { recursive: true });
  const work = await mkdtemp(join(opts.workdir ?? tmpdir(), 'imgbackup-bench-'));
  const state: { server?: S3rverLike; link?: Server } = {};
  const cleanup = async () => {
    state.link?.closeAllConnections();
    state.link?.close();
    await state.server?.close().catch(() => {});
    if (!opts.keep) await rm(work, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping`);
    if (current) {
      try {
        process.kill(-current.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    void cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  // Variants, in the order they run.
  const archiveHelp = cliHelp(['archive', '--help']);
  const topHelp = cliHelp(['--help']);
  const hasVerify = /^\s+verify\b/m.test(topHelp);
  const hasRestore = /^\s+restore\s/m.test(topHelp); // not restore-request
  const hasLevel = archiveHelp.includes('--compression-level');
  /** An extra imgbackup run with `flags`, run only if `has` (the CLI has them) and not --skip-extra. */
  const extra = (
    suffix: string,
    what: string,
    bucket: string,
    flags: string[],
    has: boolean,
    lacks: string,
  ): Variant => ({
    name: `imgbackup ${suffix}`,
    description: `imgbackup archive ${what}`,
    cold: `bench-cold-imgbackup-${bucket}`,
    cmd: process.execPath,
    args: imgbackupArgs(`bench-cold-imgbackup-${bucket}`, flags),
    isImgbackup: true,
    ...(opts.skipExtra ? { skip: '--skip-extra' } : has ? {} : { skip: `archive has ${lacks}` }),
  });
  const variants: Variant[] = [
    {
      name: 'imgbackup',
      description: 'imgbackup archive (its default settings)',
      cold: 'bench-cold-imgbackup',
      cmd: process.execPath,
      args: imgbackupArgs('bench-cold-imgbackup'),
      isImgbackup: true,
    },
    // Right after the archive they read: the next archive variant clears its listings.
    {
      name: IMGBACKUP_RESTORE,
      description:
        "imgbackup restore --to-s3 --to-bucket of the imgbackup run's tarballs (streamed)",
      cold: 'bench-cold-imgbackup',
      restoreTo: 'bench-restored-imgbackup',
      cmd: process.execPath,
      args: imgbackupRestoreArgs('bench-cold-imgbackup', 'bench-restored-imgbackup'),
      isImgbackup: true,
      ...(opts.skipRestore
        ? { skip: '--skip-restore' }
        : hasRestore
          ? {}
          : { skip: 'the CLI has no restore command yet' }),
    },
    {
      name: OLD_RESTORE,
      description:
        "old runbook: GNU parallel x (aws s3 cp down, md5sum + diff with .md5, tar xvzf, aws s3 sync up) of the imgbackup run's tarballs",
      cold: 'bench-cold-imgbackup',
      restoreTo: 'bench-restored-old',
      cmd: 'bash',
      args: oldRestoreArgs('bench-cold-imgbackup', 'bench-restored-old'),
      isImgbackup: false,
      ...(opts.skipRestore
        ? { skip: '--skip-restore' }
        : (() => {
            const m = missingTools(['parallel', 'aws']);
            return m ? { skip: m } : {};
          })()),
    },
    extra(
      '-l6',
      '--compression-level 6',
      'l6',
      ['--compression-level', '6'],
      hasLevel,
      'no --compression-level',
    ),
    extra(
      '--stream',
      '--stream',
      'stream',
      ['--stream'],
      /--stream\b/.test(archiveHelp),
      'no --stream yet',
    ),
    extra(
      '--no-compress',
      '--no-compress (plain .tar)',
      'plain',
      ['--no-compress'],
      /--no-compress\b/.test(archiveHelp),
      'no --no-compress',
    ),
    extra(
      'libdeflate',
      '--gzip-engine libdeflate (instead of isa-l at level 1)',
      'libdeflate',
      ['--gzip-engine', 'libdeflate'],
      /--gzip-engine\b[\s\S]*\bisal\b/.test(archiveHelp),
      'no isal gzip engine',
    ),
    extra(
      'zlib',
      '--gzip-engine zlib (Node zlib instead of isa-l)',
      'zlib',
      ['--gzip-engine', 'zlib'],
      /--gzip-engine\b/.test(archiveHelp),
      'no --gzip-engine',
    ),
    {
      name: 'old aws_backup.sh',
      description:
        'old workflow: GNU parallel x aws_backup.sh (aws s3 ls/sync, tar -czf, tar -tvzf, md5sum, ETag, aws s3 cp)',
      cold: 'bench-cold-old',
      cmd: 'bash',
      args: (c) => [join(REPO, 'bench', 'old_workflow.sh'), ...scriptArgs('bench-cold-old')(c)],
      isImgbackup: false,
      ...(opts.skipOld
        ? { skip: '--skip-old' }
        : (() => {
            const m = missingTools(['parallel', 'aws', 'jq', 'xxd']);
            return m ? { skip: m } : {};
          })()),
    },
    {
      name: 'sync+tar|pigz',
      description: 'hand-rolled: GNU parallel x (aws s3 sync, tar -c | pigz -p2 -6, aws s3 cp)',
      cold: 'bench-cold-pigz',
      cmd: 'bash',
      args: (c) => [join(REPO, 'bench', 'pigz_workflow.sh'), ...scriptArgs('bench-cold-pigz')(c)],
      isImgbackup: false,
      ...(opts.skipPigz
        ? { skip: '--skip-pigz' }
        : (() => {
            const m = missingTools(['parallel', 'aws', 'pigz']);
            return m ? { skip: m } : {};
          })()),
    },
  ];
  if (opts.only) {
    const unknown = opts.only.filter((n) => !variants.some((v) => v.name === n));
    if (unknown.length > 0) {
      console.error(
        `bench: --only: no variant ${unknown.map((n) => JSON.stringify(n)).join(', ')}; there are ${variants.map((v) => JSON.stringify(v.name)).join(', ')}`,
      );
      process.exit(2);
    }
    for (const v of variants) {
      if (v.name !== 'imgbackup' && !opts.only.includes(v.name)) v.skip = '--only';
    }
  }
  for (const v of variants) {
    if (v.skip && !v.skip.startsWith('--')) log(`${v.name}: ${v.skip}; skipping it`);
  }

  const started = new Date();
  const { server: s, endpoint } = await startS3rver(join(work, 's3'), [
    LIVE,
    ...new Set(variants.flatMap((v) => [v.cold, ...(v.restoreTo ? [v.restoreTo] : [])])),
  ]);
  state.server = s;
  const s3 = s3client(endpoint);
  log(`s3rver at ${endpoint}, data in ${work}`);
  // The measured commands go through the emulated link, if any; the bench's own setup and
  // checks do not.
  let cmdEndpoint = endpoint;
  if (opts.link) {
    const link = await startLink(endpoint, opts.link);
    state.link = link.server;
    cmdEndpoint = link.endpoint;
    log(
      `emulated link at ${cmdEndpoint}: ${opts.link.firstByteMs} ms to first byte, ` +
        `${opts.link.bytesPerSecond / MB} MB/s per answer`,
    );
  }

  // Data.
  const t0 = performance.now();
  const bases = makeBases(opts.imageBytes[1]);
  const genSeconds = (performance.now() - t0) / 1000;
  const plates: PlateIds[] = Array.from({ length: opts.plates }, (_, i) => {
    const id = `BR${String(100001 + i).padStart(8, '0')}`;
    return { plateId: id, plateIdFull: `${id}__2024-01-0${(i % 9) + 1}T10_00_00-Measurement 1` };
  });
  const plateBytes = Math.round(opts.plateMb * MB);
  const files: PlanFile[] = plates.flatMap((p, i) =>
    planPlate(PROJECT, BATCH, p, plateBytes, 1000 + i, opts.imageBytes),
  );
  const sourceBytes = files.reduce((n, f) => n + f.size, 0);
  const mix = mixStats(bases, files);
  log(
    `generated base buffers in ${genSeconds.toFixed(1)} s; uploading ${files.length} objects, ` +
      `${(sourceBytes / MB).toFixed(0)} MB`,
  );
  const t1 = performance.now();
  await pool(files, UPLOAD_CONCURRENCY, async (f) => {
    await s3.send(new PutObjectCommand({ Bucket: LIVE, Key: f.key, Body: fileBytes(bases, f) }));
  });
  const uploadSeconds = (performance.now() - t1) / 1000;
  log(`uploaded in ${uploadSeconds.toFixed(1)} s`);
  for (const [cat, st] of Object.entries(mix)) {
    log(
      `  ${cat.padEnd(8)} ${String(st.files).padStart(4)} files ${(st.bytes / MB).toFixed(0).padStart(6)} MB ` +
        `(${((100 * st.bytes) / sourceBytes).toFixed(1)} %), zlib ratio l1 ${st.gzipRatioL1.toFixed(3)} l6 ${st.gzipRatioL6.toFixed(3)}`,
    );
  }

  const platesCsv = join(work, 'plates.csv');
  await writeFile(
    platesCsv,
    `plate_id,plate_id_full\n${plates.map((p) => `${p.plateId},${p.plateIdFull}`).join('\n')}\n`,
  );
  const awsConfig = join(work, 'aws-config');
  await writeFile(
    awsConfig,
    '[default]\nregion = us-east-1\nrequest_checksum_calculation = when_required\n' +
      'response_checksum_validation = when_required\ns3 =\n    addressing_style = path\n',
  );
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: awsConfig,
    AWS_SHARED_CREDENTIALS_FILE: join(work, 'no-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
    PARALLEL_HOME: join(work, 'parallel-home'),
  };
  // The bench's own flags are not for the commands it measures; BENCH_CHILD_NODE_OPTIONS is
  // (e.g. `--import ./memlog.mjs` to trace imgbackup's memory).
  delete env.NODE_OPTIONS;
  if (process.env.BENCH_CHILD_NODE_OPTIONS) env.NODE_OPTIONS = process.env.BENCH_CHILD_NODE_OPTIONS;
  delete env.AWS_PROFILE;
  delete env.AWS_ENDPOINT_URL;

  const backupPrefix = `projects/${PROJECT}/workspace/backup/`;
  const clearBackupListings = async () => {
    for (const o of await listAll(s3, LIVE, backupPrefix)) {
      await s3.send(new DeleteObjectCommand({ Bucket: LIVE, Key: o.Key! }));
    }
  };
  const listingsMatch = async (): Promise<boolean> => {
    const objs = await listAll(s3, LIVE, backupPrefix);
    const etag = (key: string) => objs.find((o) => o.Key === key)?.ETag;
    return plates.every((p) => {
      const tag = `${PROJECT}_${BATCH}_${p.plateId}`;
      const a = etag(`${backupPrefix}${tag}_file_listing_s3.txt`);
      return a !== undefined && a === etag(`${backupPrefix}${tag}_file_listing_tar.txt`);
    });
  };

  const emptyBucket = async (bucket: string) => {
    for (const o of await listAll(s3, bucket)) {
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key! }));
    }
  };

  const slugOf = (v: Variant, round: number) =>
    v.name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '') + (round > 1 ? `-r${round}` : '');
  // Whether this round's `imgbackup` archive left tarballs for the restores to read.
  let archived = false;
  const planned = new Map(files.map((f) => [f.key, f]));
  const sourceBytesOf = (o: { key: string }) => fileBytes(bases, planned.get(o.key)!);

  /** A restore variant: the round's imgbackup tarballs into v.restoreTo, then the byte check. */
  const runRestoreOnce = async (v: Variant, round: number): Promise<VariantResult> => {
    const dest = v.restoreTo!;
    const slug = slugOf(v, round);
    const tmp = join(work, `tmp-${slug}`);
    const logDir = join(logsRoot, slug);
    const base = { name: v.name, description: v.description, round, restoredTo: dest };
    if (!archived) {
      log(`${v.name}: skipped, the imgbackup archive of this round failed`);
      return { ...base, failed: 'no tarballs: the imgbackup archive of this round failed' };
    }
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    await emptyBucket(dest);
    const ctx: RunContext = {
      endpoint: cmdEndpoint,
      platesCsv,
      tmpdir: tmp,
      logDir,
      maxProcs: opts.maxProcs,
    };
    const args = v.args(ctx);
    log(`running ${v.name}${opts.repeat > 1 ? ` (round ${round}/${opts.repeat})` : ''} ...`);
    spawnSync('sync');
    // TMPDIR too is the watched tmpdir, so a temporary file anywhere counts in peak tmpdir.
    const m = await measure(v.cmd, args, { ...env, TMPDIR: tmp }, tmp, logDir);
    const check = await checkRestored(s3, dest, files, sourceBytesOf);
    const r: VariantResult = {
      ...base,
      command: [v.cmd === process.execPath ? 'node' : v.cmd, ...args].join(' '),
      exitCode: m.exitCode,
      wallSeconds: m.wallSeconds,
      sourceMBps: sourceBytes / MB / m.wallSeconds,
      peakTmpdirBytes: m.peakTmpdirBytes,
      peakRssBytes: m.peakRssBytes,
      peakProcesses: m.peakProcesses,
      cpuSeconds: m.cpuSeconds,
      cpuSecondsPerGB: cpuPerGB(m.cpuSeconds, sourceBytes),
      serverCpuSeconds: m.serverCpuSeconds,
      otherCpuSeconds: m.otherCpuSeconds,
      restoredObjects: check.objects,
      restoredBytes: check.bytes,
      bytesEqual: check.ok,
      restoreProblems: { count: check.problems, first: check.shown },
      logs: logDir,
    };
    if (m.exitCode !== 0 || !check.ok) {
      const why =
        m.exitCode !== 0
          ? `exit ${m.exitCode}`
          : `s3://${dest} is not the sources: ${check.problems} problem(s), first: ${check.shown[0]}`;
      r.failed = `${why}; see ${logDir}`;
      log(`${v.name} FAILED (${why}); last lines of stderr/stdout:`);
      process.stderr.write(`${tail(m.stderr, 15)}\n${tail(m.stdout, 15)}\n`);
    }
    log(
      `${v.name}: ${fmt(m.wallSeconds)} s, exit ${m.exitCode}, ${check.objects} objects, ` +
        `${fmt(check.bytes / MB)} MB, bytes ${check.ok ? 'equal' : 'NOT equal'} to the sources, ` +
        `other jobs used ${fmt(m.otherCpuSeconds)} CPU s meanwhile`,
    );
    rmSync(tmp, { recursive: true, force: true });
    await emptyBucket(dest); // the server's disk holds one restored copy at a time
    return r;
  };

  const runOnce = async (v: Variant, round: number): Promise<VariantResult> => {
    if (v.restoreTo) return runRestoreOnce(v, round);
    const slug = slugOf(v, round);
    const tmp = join(work, `tmp-${slug}`);
    const logDir = join(logsRoot, slug);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    if (v.name === 'imgbackup') archived = false;
    await clearBackupListings();
    await emptyBucket(v.cold);
    const ctx: RunContext = {
      endpoint: cmdEndpoint,
      platesCsv,
      tmpdir: tmp,
      logDir,
      maxProcs: opts.maxProcs,
    };
    const args = v.args(ctx);
    log(`running ${v.name}${opts.repeat > 1 ? ` (round ${round}/${opts.repeat})` : ''} ...`);
    // Dirty pages of the previous step (the generated data, the last variant's objects) are
    // flushed now, not during this variant's run: every variant starts from the same state.
    spawnSync('sync');
    const m = await measure(v.cmd, args, env, tmp, logDir);
    const cold = await listAll(s3, v.cold);
    const tars = cold.filter((o) => /\.tar(\.gz)?$/.test(o.Key ?? ''));
    const tarballBytes = tars.reduce((n, o) => n + (o.Size ?? 0), 0);
    const r: VariantResult = {
      name: v.name,
      description: v.description,
      round,
      command: [v.cmd === process.execPath ? 'node' : v.cmd, ...args].join(' '),
      exitCode: m.exitCode,
      wallSeconds: m.wallSeconds,
      sourceMBps: sourceBytes / MB / m.wallSeconds,
      peakTmpdirBytes: m.peakTmpdirBytes,
      peakRssBytes: m.peakRssBytes,
      peakProcesses: m.peakProcesses,
      cpuSeconds: m.cpuSeconds,
      serverCpuSeconds: m.serverCpuSeconds,
      otherCpuSeconds: m.otherCpuSeconds,
      tarballBytes,
      tarballs: tars.length,
      tmpdirOverTarball: tarballBytes > 0 ? m.peakTmpdirBytes / tarballBytes : NaN,
      logs: logDir,
      ...(v.isImgbackup
        ? { threadCpu: threadFigures(m.threads, m.cpuSeconds, sourceBytes, logDir) }
        : {}),
    };
    if (m.exitCode !== 0 || tars.length !== 2 * plates.length) {
      const why =
        m.exitCode !== 0
          ? `exit ${m.exitCode}`
          : `${tars.length} tarballs in s3://${v.cold}, expected ${2 * plates.length}`;
      r.failed = `${why}; see ${logDir}`;
      log(`${v.name} FAILED (${why}); last lines of stderr/stdout:`);
      process.stderr.write(`${tail(m.stderr, 15)}\n${tail(m.stdout, 15)}\n`);
    }
    if (v.name !== 'sync+tar|pigz') r.listingsMatch = await listingsMatch();
    if (v.name === 'imgbackup') archived = !r.failed;
    if (v.isImgbackup) r.phases = imgbackupPhases(logDir);
    log(
      `${v.name}: ${fmt(m.wallSeconds)} s, exit ${m.exitCode}, ${tars.length} tarballs, ` +
        `${fmt(tarballBytes / MB)} MB, other jobs used ${fmt(m.otherCpuSeconds)} CPU s meanwhile`,
    );
    rmSync(tmp, { recursive: true, force: true });

    if (v.name === 'imgbackup' && hasVerify && !r.failed) {
      const vlog = join(logsRoot, `imgbackup-verify${round > 1 ? `-r${round}` : ''}`);
      log('running imgbackup verify ...');
      const vm = await measure(
        process.execPath,
        [
          CLI,
          'verify',
          '--plates',
          platesCsv,
          '--project-name',
          PROJECT,
          '--batch-id',
          BATCH,
          '--bucket',
          LIVE,
          '--cold-bucket',
          v.cold,
          '--endpoint-url',
          cmdEndpoint,
        ],
        env,
        tmp,
        vlog,
      );
      const prev = verify.wallSeconds;
      if (typeof prev !== 'number' || vm.wallSeconds < prev) {
        verify = {
          exitCode: vm.exitCode,
          wallSeconds: vm.wallSeconds,
          cpuSeconds: vm.cpuSeconds,
          peakRssBytes: vm.peakRssBytes,
          otherCpuSeconds: vm.otherCpuSeconds,
          plates: plates.length,
          round,
          logs: vlog,
          ...(vm.exitCode !== 0 ? { failed: tail(vm.stderr, 5) || tail(vm.stdout, 5) } : {}),
        };
      }
      log(`imgbackup verify: ${fmt(vm.wallSeconds, 2)} s, exit ${vm.exitCode}`);
    }
    return r;
  };

  let verify: Record<string, unknown> = {
    skipped: hasVerify ? 'imgbackup archive did not succeed' : 'the CLI has no verify command yet',
  };
  // Rounds run every variant once each; per variant the fastest successful run is reported
  // (the least disturbed by other jobs on the machine), and every run is kept in the JSON.
  const runs = new Map<string, VariantResult[]>();
  for (let round = 1; round <= opts.repeat; round++) {
    for (const v of variants) {
      if (v.skip) continue;
      const r = await runOnce(v, round);
      runs.set(v.name, [...(runs.get(v.name) ?? []), r]);
    }
  }
  const results: VariantResult[] = variants.map((v) => {
    if (v.skip)
      return {
        name: v.name,
        description: v.description,
        skipped: v.skip,
        ...(v.restoreTo ? { restoredTo: v.restoreTo } : {}),
      };
    const all = runs.get(v.name) ?? [];
    const ok = all.filter((r) => !r.failed);
    const best =
      ok.length > 0 ? ok.reduce((a, b) => (b.wallSeconds! < a.wallSeconds! ? b : a)) : all[0]!;
    return {
      ...best,
      runs: all.map((r) => ({
        round: r.round!,
        wallSeconds: r.wallSeconds!,
        otherCpuSeconds: r.otherCpuSeconds!,
        ...(r.failed ? { failed: r.failed } : {}),
      })),
    };
  });

  // Ratios to imgbackup (variant / imgbackup).
  const base = results.find((r) => r.name === 'imgbackup' && !r.failed && !r.skipped);
  const restores = results.filter((r) => r.restoredTo);
  const archives = results.filter((r) => !r.restoredTo);
  for (const r of archives) {
    if (!base || r.skipped || r.failed) continue;
    const q = (a?: number, b?: number) => (a !== undefined && b ? a / b : NaN);
    r.ratiosToImgbackup = {
      wall: q(r.wallSeconds, base.wallSeconds),
      tmpdir: q(r.peakTmpdirBytes, base.peakTmpdirBytes),
      rss: q(r.peakRssBytes, base.peakRssBytes),
      cpu: q(r.cpuSeconds, base.cpuSeconds),
      tarball: q(r.tarballBytes, base.tarballBytes),
    };
  }

  const byName = (n: string) => results.find((r) => r.name === n && r.wallSeconds && !r.failed);
  const old = byName('old aws_backup.sh');
  const pigz = byName('sync+tar|pigz');
  const l6 = byName('imgbackup -l6');
  const stream = byName('imgbackup --stream');
  const targets: Target[] = [];
  // The issue's wall-time targets: a variant's time as a fraction of a baseline's.
  const wallTarget = (
    variant: string,
    a: VariantResult | undefined,
    limit: number,
    baseline: string,
    b: VariantResult | undefined,
  ) => {
    if (!a || !b) return;
    const q = a.wallSeconds! / b.wallSeconds!;
    targets.push({
      target: `${variant} wall <= ${limit}x ${baseline}`,
      measured: `${q.toFixed(3)}x`,
      ok: q <= limit,
    });
  };
  wallTarget('imgbackup', base, 0.25, 'old', old);
  wallTarget('imgbackup', base, 0.5, 'pigz variant', pigz);
  wallTarget('imgbackup -l6', l6, 0.4, 'old', old);
  if (base) {
    const q = base.tmpdirOverTarball!;
    targets.push({
      target: 'imgbackup peak tmpdir <= 1.05x tarball bytes',
      measured: `${q.toFixed(3)}x`,
      ok: q <= 1.05,
    });
  }
  if (stream) {
    const q = stream.peakTmpdirBytes! / 2 ** 20;
    targets.push({
      target: 'imgbackup --stream peak tmpdir <= 64 MiB',
      measured: `${q.toFixed(1)} MiB`,
      ok: q <= 64,
    });
  }
  if (base) {
    const q = base.peakRssBytes! / MB;
    targets.push({
      target: `imgbackup peak RSS (<= 400 MB is the target at --max-procs 4; this run: ${opts.maxProcs})`,
      measured: `${q.toFixed(0)} MB`,
      ...(opts.maxProcs === 4 ? { ok: q <= 400 } : {}),
    });
  }
  if (typeof verify.wallSeconds === 'number') {
    targets.push({
      target: `verify of ${plates.length} plates (target: 10 plates < 5 s)`,
      measured: `${verify.wallSeconds.toFixed(2)} s`,
    });
  }

  addRestoreRatios(restores);
  const targets13 = restoreTargets(restores, opts.maxProcs);

  const report = {
    startedAt: started.toISOString(),
    params: {
      plates: opts.plates,
      plateMb: opts.plateMb,
      maxProcs: opts.maxProcs,
      repeat: opts.repeat,
      imageMb: opts.imageBytes.map((b) => b / MB),
      ...(opts.link ? { link: opts.link } : {}),
    },
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memBytes: totalmem(),
      node: process.version,
      aws: toolVersion('aws --version'),
      parallel: toolVersion('parallel --version'),
      pigz: toolVersion('pigz --version'),
      tar: toolVersion('tar --version'),
      gzip: toolVersion('gzip --version'),
    },
    data: {
      project: PROJECT,
      batch: BATCH,
      plates,
      objects: files.length,
      sourceBytes,
      baseGenerationSeconds: genSeconds,
      uploadSeconds,
      mix,
    },
    method: {
      wallSeconds: 'spawn to exit of the whole command',
      sourceMBps: 'source bytes (10^6) of all plates / wall seconds',
      peakTmpdirBytes: `largest sum of file sizes under the variant's tmpdir, sampled every ${SAMPLE_MS} ms`,
      peakRssBytes: `largest sum of VmRSS over the command's process tree, sampled every ${SAMPLE_MS} ms`,
      cpuSeconds: 'user+system CPU of the whole tree (cutime+cstime of a wrapping sh)',
      serverCpuSeconds: 'CPU of the bench process (in-process s3rver + sampler) during the run',
      otherCpuSeconds:
        'busy CPU of the rest of the machine during the run (/proc/stat); large values mean other jobs skewed it',
      tarballBytes: "sum of the .tar.gz object sizes in the variant's own cold bucket",
      ratiosToImgbackup: 'variant / imgbackup (default settings)',
      restores:
        "the imgbackup run's tarballs restored into an empty bucket (restoredTo) at the original keys; " +
        'every object then listed and read back, and compared with the bytes the bench uploaded (bytesEqual)',
      cpuSecondsPerGB: 'cpuSeconds / source GB (10^9 bytes)',
      ratiosToOldRestore: 'restore variant / old restore',
    },
    variants: results,
    verify,
    targets,
    restoreTargets: targets13,
  };
  mkdirSync(resultsDir, { recursive: true });
  await writeFile(opts.out, `${JSON.stringify(report, null, 2)}\n`);

  const mixLine = Object.entries(mix)
    .map(
      ([c, st]) =>
        `${c} ${((100 * st.bytes) / sourceBytes).toFixed(0)}% (l6 ${st.gzipRatioL6.toFixed(2)})`,
    )
    .join(', ');
  console.log(
    `\n${opts.plates} plates x ${opts.plateMb} MB = ${(sourceBytes / MB).toFixed(0)} MB in ${files.length} objects ` +
      `(${mixLine}); images ${opts.imageBytes.map((b) => b / MB).join('-')} MB; ` +
      `--max-procs ${opts.maxProcs}; ${cpus().length} cores` +
      (opts.link
        ? `; emulated link: ${opts.link.firstByteMs} ms to first byte, ${opts.link.bytesPerSecond / MB} MB/s per answer`
        : '') +
      '\n',
  );
  console.log(table(archives));
  console.log(`\nCPU per thread (imgbackup variants)\n${threadTable(archives)}`);
  if (restores.length > 0) console.log(`\n${restoreTable(restores)}`);
  console.log(
    '\nratios "x" are variant / imgbackup (restores: / old restore); MB = 10^6 bytes, GB = 10^9',
  );
  if (opts.repeat > 1) {
    console.log(`each row is the variant's fastest of ${opts.repeat} runs; all runs:`);
    for (const r of results) {
      if (!r.runs) continue;
      const all = r.runs.map(
        (x) =>
          `${x.failed ? 'FAILED' : `${x.wallSeconds.toFixed(1)} s`} (other CPU ${x.otherCpuSeconds.toFixed(0)} s)`,
      );
      console.log(`  ${r.name}: ${all.join(', ')}`);
    }
  }
  for (const r of results) {
    if (r.listingsMatch === false)
      console.log(`note: ${r.name}: file_listing_s3.txt != file_listing_tar.txt`);
  }
  if (typeof verify.wallSeconds === 'number') {
    console.log(
      `imgbackup verify (${plates.length} plates): ${verify.wallSeconds.toFixed(2)} s, exit ${String(verify.exitCode)}`,
    );
  } else {
    console.log(`imgbackup verify: skipped (${String(verify.skipped)})`);
  }
  for (const r of results) {
    for (const p of r.phases ?? []) {
      const ev = p.events.map(
        (e) => `${e.msg}${e.detail ? ` ${e.detail}` : ''} @${e.at.toFixed(1)}s`,
      );
      console.log(`${r.name} ${p.plateId} (${fmt(p.seconds)} s): ${ev.join('; ')}`);
    }
  }
  printTargets('issue 4 targets', targets);
  printTargets('issue 13 targets (restore)', targets13);
  console.log(`\nJSON: ${opts.out}\nlogs: ${logsRoot}`);

  s3.destroy();
  await cleanup();
  if (opts.keep) log(`kept ${work}`);
}

main().catch((err: unknown) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
