import { tmpdir } from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import { UsageError } from '../errors.js';
import { unsafeNameReason, type LayoutOptions } from '../layout/layout.js';
import { createLogger, type Logger } from '../log/log.js';
import { readPlatesCsv, type PlateRow } from '../plates/plates-csv.js';
import { platesOfShard, resolveShard, shardLine, type Shard } from '../plates/shard.js';
import { createS3Client, DEFAULT_MAX_ATTEMPTS, type S3Options } from '../s3/client.js';
import { S3Store } from '../s3/store.js';
import type { RunOptions } from '../core/pool.js';
import type { Reporter } from './reporter.js';
import { durationOption, parseDuration } from '../commands/restore-flags.js';
import { DEFAULT_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from '../core/lifecycle/lease.js';

export interface CommonFlags {
  plates: string;
  projectName: string;
  batchId: string;
  bucket: string;
  coldBucket: string;
  endpointUrl?: string;
  region?: string;
  profile?: string;
  maxProcs: number;
  maxAttempts: number;
  logDir?: string;
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
  shard?: string;
  shardCount?: string;
  leaseTtl: number;
}

/** What every command needs, built once from its flags. */
export interface Context {
  /** The CSV's plates, or with a shard only that shard's. */
  plates: PlateRow[];
  shard?: Shard;
  layout: LayoutOptions;
  store: S3Store;
  /** What the store's client was made from: each plate's worker thread makes its own. */
  s3: S3Options;
  log: Logger;
  flags: CommonFlags;
  signal: AbortSignal;
}

const parseTtl = parseDuration('--lease-ttl');

function leaseTtl(v: string): number {
  const ms = parseTtl(v);
  if (ms < MIN_LEASE_TTL_MS)
    throw new InvalidArgumentError(`--lease-ttl takes at least ${MIN_LEASE_TTL_MS / 1000}s`);
  return ms;
}

export function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1)
      throw new InvalidArgumentError(`${name} takes a whole number >= 1`);
    return n;
  };
}

/** The options shared by every plate command, in the words aws CLI and GNU parallel users know. */
export function addCommonOptions(
  cmd: Command,
  /** For a command with another way to name its objects (restore-request --prefix). */
  opts: { platesOptional?: boolean } = {},
): Command {
  const plateOption = (flags: string, description: string) =>
    opts.platesOptional ? cmd.option(flags, description) : cmd.requiredOption(flags, description);
  plateOption('--plates <csv>', 'plates CSV with header plate_id,plate_id_full');
  plateOption('--project-name <name>', 'project, e.g. 2013_Gustafsdottir_PLOSONE');
  plateOption('--batch-id <id>', 'batch, e.g. BBBC022');
  return cmd
    .option('--bucket <name>', 'live bucket holding the plates', 'imaging-platform')
    .option('--cold-bucket <name>', 'bucket receiving the tarballs', 'imaging-platform-cold')
    .addOption(
      new Option('--endpoint-url <url>', 'S3-compatible endpoint (path-style)').env(
        'AWS_ENDPOINT_URL',
      ),
    )
    .option('--region <region>', 'AWS region (default: AWS_REGION or the profile)')
    .option('--profile <name>', 'AWS profile from ~/.aws/config')
    .option('--max-procs <n>', 'plates processed at once', positiveInt('--max-procs'), 2)
    .option(
      '--max-attempts <n>',
      'attempts per S3 request',
      positiveInt('--max-attempts'),
      DEFAULT_MAX_ATTEMPTS,
    )
    .addOption(
      durationOption(
        '--lease-ttl <duration>',
        "how long a plate's S3 lease outlives its holder's last renewal (90s, 5m); a killed run's plates are taken over after it plus a margin",
        DEFAULT_LEASE_TTL_MS,
        leaseTtl,
      ),
    )
    .option('--log-dir <dir>', 'keep a job log and one log file per plate here')
    .option('--json', 'print one JSON object per plate and a summary on stdout')
    .option('--verbose', 'debug logs and stack traces on stderr')
    .option('--quiet', 'print only the summary (and errors)')
    .option(
      '--shard <index/count>',
      'only the plates of shard INDEX (0 to COUNT-1) of COUNT, by a hash of plate_id (README ' +
        '"Shards"). Default: AWS_BATCH_JOB_ARRAY_INDEX/AWS_BATCH_JOB_ARRAY_SIZE, or ' +
        'JOB_COMPLETION_INDEX with --shard-count',
    )
    .option(
      '--shard-count <n>',
      'the shard count for an index the engine gives (JOB_COMPLETION_INDEX, ' +
        'AWS_BATCH_JOB_ARRAY_INDEX). Default: IMGBACKUP_SHARD_COUNT',
    );
}

/**
 * `reporter`: where log lines go, so the progress display draws around them, and where the shard's
 * summary line goes.
 */
export async function buildContext(
  flags: CommonFlags,
  signal: AbortSignal,
  reporter: Pick<Reporter, 'logLine' | 'footer'>,
): Promise<Context> {
  for (const [flag, value] of [
    ['--project-name', flags.projectName],
    ['--batch-id', flags.batchId],
  ] as const) {
    if (value === undefined && flags.plates === undefined) continue;
    const why = unsafeNameReason(value);
    if (why) throw new UsageError(`${flag} ${JSON.stringify(value)} ${why}`);
  }
  const shard = resolveShard(flags, process.env);
  if (shard && flags.plates === undefined)
    throw new UsageError(
      `a shard (${shard.source}) splits a plates CSV, and this run has none: unset the shard ` +
        'variables or drop --shard / --shard-count',
    );
  // Only a command that names its objects another way (and checked that) runs without plates.
  const csv = flags.plates === undefined ? [] : await readPlatesCsv(flags.plates);
  const plates = shard ? platesOfShard(csv, shard) : csv;
  if (shard)
    reporter.footer(shardLine(shard, plates.length, csv.length), {
      shard: { ...shard, plates: plates.length, csvPlates: csv.length },
    });
  const log = createLogger({
    verbose: flags.verbose === true,
    json: flags.json === true,
    write: reporter.logLine,
  });
  const s3: S3Options = {
    ...(flags.endpointUrl ? { endpointUrl: flags.endpointUrl } : {}),
    ...(flags.region ? { region: flags.region } : {}),
    ...(flags.profile ? { profile: flags.profile } : {}),
    maxAttempts: flags.maxAttempts,
  };
  const client = createS3Client(s3);
  return {
    plates,
    ...(shard ? { shard } : {}),
    layout: {
      projectName: flags.projectName,
      batchId: flags.batchId,
      bucket: flags.bucket,
      coldBucket: flags.coldBucket,
    },
    store: new S3Store(client, signal),
    s3,
    log,
    flags,
    signal,
  };
}

/** What every plate command hands core: its plates, layout, pool size, log and reporter. */
export function runOptions(
  ctx: Context,
  reporter: Pick<Reporter, 'onDone'> & Partial<Pick<Reporter, 'onStart'>>,
): RunOptions & { layout: LayoutOptions } {
  return {
    layout: ctx.layout,
    plates: ctx.plates,
    ...(ctx.shard ? { shard: ctx.shard } : {}),
    maxProcs: ctx.flags.maxProcs,
    signal: ctx.signal,
    log: ctx.log,
    s3: ctx.s3,
    ...(ctx.flags.logDir ? { logDir: ctx.flags.logDir } : {}),
    ...(ctx.flags.leaseTtl !== undefined ? { leaseTtlMs: ctx.flags.leaseTtl } : {}),
    ...(reporter.onStart ? { onStart: reporter.onStart } : {}),
    onDone: reporter.onDone,
  };
}

export const defaultTmpdir = () => tmpdir();
