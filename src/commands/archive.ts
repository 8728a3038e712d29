import { InvalidArgumentError } from 'commander';
import {
  archive,
  chooseGzipEngine,
  DEFAULT_READ_AHEAD,
  GZIP_ENGINES,
  type GzipEngineName,
} from '../core/archive.js';
import type { ArchiveRunOptions } from '../core/archive.js';
import type { PlateResult } from '../core/pool.js';
import { archiveRestoringSources } from '../core/restore/archive-sources.js';
import { DEFAULT_PRICES } from '../core/restore/prices.js';
import { UsageError } from '../errors.js';
import { durationOption, tierOption, type Tier } from './restore-flags.js';
import {
  addCommonOptions,
  buildContext,
  defaultTmpdir,
  positiveInt,
  type CommonFlags,
  runOptions,
} from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';
import { formatBytes } from '../cli/render.js';

interface ArchiveFlags extends CommonFlags {
  tmpdir: string;
  compressionLevel: number;
  dryRun?: boolean;
  stream?: boolean;
  compress: boolean;
  gzipEngine?: GzipEngineName;
  restoreSources?: boolean;
  wait?: boolean;
  timeout: number;
  poll: number;
  tier: Tier;
  days: number;
  ledger?: string;
}

/** gzip level 1: on the bench's image-like data ~4 % larger than level 6, half the CPU (README). */
export const DEFAULT_COMPRESSION_LEVEL = 1;

function level(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 9) {
    throw new InvalidArgumentError('--compression-level takes a gzip level from 1 to 9');
  }
  return n;
}

/** The restore flags mean nothing without --restore-sources, and it cannot be a dry run. */
function checkRestoreFlags(f: ArchiveFlags): void {
  if (!f.restoreSources) {
    if (f.wait || f.ledger) throw new UsageError('--wait and --ledger go with --restore-sources');
    return;
  }
  if (f.dryRun)
    throw new UsageError(
      '--restore-sources sends requests; for a dry run use imgbackup restore-request --sources --dry-run',
    );
}

function engineName(v: string): GzipEngineName {
  const name = GZIP_ENGINES.find((e) => e === v);
  if (!name) throw new InvalidArgumentError(`--gzip-engine takes ${GZIP_ENGINES.join(' or ')}`);
  return name;
}

export const archiveCommand: CommandSpec = {
  name: 'archive',
  define: (program) =>
    addCommonOptions(
      program
        .command('archive')
        .summary('stream plates from S3 into tar.gz tarballs in the cold bucket')
        .description(
          'For each plate of the CSV: list its four source folders, stream every object into two ' +
            'tarballs (images+illum+analysis, backend) in --tmpdir, upload them to the cold ' +
            'bucket, check their ETags, and write the .md5/.etag files, the listings and the ' +
            'delete script. Plates already archived are skipped; nothing is ever overwritten. ' +
            'A plate whose earlier run was interrupted is redone cleanly.',
        ),
    )
      .option('--tmpdir <dir>', 'local directory for tarballs in progress', defaultTmpdir())
      .option(
        '--compression-level <n>',
        'gzip level, 1 (fastest) to 9 (smallest)',
        level,
        DEFAULT_COMPRESSION_LEVEL,
      )
      .option(
        '--gzip-engine <name>',
        'isal, libdeflate or zlib. Default: the fastest one built at install for the level: ' +
          'isal (ISA-L igzip) at 1-3, libdeflate at 4-9; zlib if the addon was not built',
        engineName,
      )
      .option(
        '--no-compress',
        'write plain .tar tarballs (T_<group>.tar); verify, delete and plan find them by themselves',
      )
      .option('--dry-run', 'list what each plate would archive; write nothing')
      .option(
        '--restore-sources',
        'first request restores of archived sources; archive the plates that need none',
      )
      .option('--wait', 'with --restore-sources: wait for the restores, then archive those plates')
      .addOption(
        durationOption(
          '--timeout <duration>',
          'with --wait: give up after this long',
          48 * 3_600_000,
        ),
      )
      .addOption(
        durationOption(
          '--poll <duration>',
          'with --wait: the longest interval between polls',
          5 * 60_000,
        ),
      )
      .addOption(tierOption())
      .option(
        '--days <n>',
        'with --restore-sources: days a GLACIER restored copy stays readable',
        positiveInt('--days'),
        7,
      )
      .option('--ledger <file>', 'with --restore-sources: the restore-request --sources ledger')
      .option(
        '--stream',
        'upload parts from memory while each tarball is written: nothing in --tmpdir ' +
          '(without it, parts go up as soon as they are on disk)',
      )
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup archive --plates plates.csv --project-name 2013_Gustafsdottir_PLOSONE \\
      --batch-id BBBC022 --tmpdir ~/ebs_tmp --max-procs 10 --log-dir log/BBBC022
  $ imgbackup archive --plates plates.csv --project-name P --batch-id B --dry-run
  $ imgbackup archive --plates plates.csv --project-name P --batch-id B \\
      --endpoint-url http://127.0.0.1:9000 --bucket live --cold-bucket cold`,
      ),
  run: async (flags, signal, reporter): Promise<PlateResult[]> => {
    const f = flags as unknown as ArchiveFlags;
    const { engine, fallback } = chooseGzipEngine(f.gzipEngine, f.compressionLevel);
    checkRestoreFlags(f);
    const ctx = await buildContext(f, signal, reporter);
    // Said once, when the first plate starts compressing: not for a bad flag or CSV, a dry run,
    // --no-compress or a run whose plates are all archived already.
    let warn = f.compress && !f.dryRun ? fallback : undefined;
    const onPlan = (plateId: string, totalBytes: number) => {
      if (warn) reporter.note(`imgbackup: ${warn}`);
      warn = undefined;
      reporter.onPlan(plateId, totalBytes);
    };
    reporter.setTotal(ctx.plates.length);
    const run = (o: ArchiveRunOptions) =>
      f.restoreSources
        ? archiveRestoringSources(ctx.store, {
            ...o,
            restore: {
              tier: f.tier,
              days: f.days,
              prices: DEFAULT_PRICES,
              ...(f.ledger ? { ledger: f.ledger } : {}),
            },
            ...(f.wait ? { wait: { timeoutMs: f.timeout, pollMs: f.poll } } : {}),
            onPoll: (waiting, nextMs) =>
              reporter.note(
                `archive: ${waiting.length} plate(s) waiting for source restores; next look in ${Math.round(nextMs / 1000)} s`,
              ),
          })
        : archive(ctx.store, o);
    const results = await run({
      ...runOptions(ctx, reporter),
      layout: { ...ctx.layout, compressed: f.compress },
      tmpdir: f.tmpdir,
      level: f.compressionLevel,
      engine,
      readAhead: DEFAULT_READ_AHEAD,
      progress: reporter.progress,
      onPlan,
      ...(f.dryRun ? { dryRun: true } : {}),
      ...(f.stream ? { stream: true } : {}),
    });
    for (const r of results) {
      const tarballs = r.details?.dryRun
        ? (r.details.tarballs as { bucket: string; key: string; files: number; bytes: number }[])
        : [];
      for (const t of tarballs) {
        reporter.note(
          `would write s3://${t.bucket}/${t.key} (${t.files} files, ${formatBytes(t.bytes)}) [${r.plateId}]`,
          'stdout',
        );
      }
    }
    return results;
  },
};
