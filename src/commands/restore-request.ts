import {
  addCommonOptions,
  buildContext,
  positiveInt,
  type CommonFlags,
  runOptions,
} from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';
import { loadPrices } from '../core/restore/prices.js';
import { restoreRequest } from '../core/restore/request.js';
import { restoreRequestPrefix } from '../core/restore/prefix-request.js';
import { restoreRequestSources } from '../core/restore/source-request.js';
import { UsageError } from '../errors.js';
import {
  addWhatOption,
  globListOption,
  tierOption,
  type RestoreCommonFlags,
  type Tier,
} from './restore-flags.js';

interface RestoreRequestFlags extends CommonFlags, RestoreCommonFlags {
  tier: Tier;
  days: number;
  dryRun?: boolean;
  prices?: string;
  sources?: boolean;
  ledger?: string;
  prefix?: string;
  include?: string[];
  exclude?: string[];
}

/** --prefix replaces the plate flags; without it they are required as for every plate command. */
function checkTarget(f: RestoreRequestFlags): void {
  if (f.prefix) {
    if (f.plates !== undefined)
      throw new UsageError('give --prefix or --plates, not both (--prefix needs no plates CSV)');
    return;
  }
  if ((f.include ?? []).length + (f.exclude ?? []).length > 0)
    throw new UsageError('--include / --exclude go with --prefix s3://bucket/prefix/');
  for (const [flag, value] of [
    ['--plates <csv>', f.plates],
    ['--project-name <name>', f.projectName],
    ['--batch-id <id>', f.batchId],
  ] as const) {
    if (value === undefined)
      throw new UsageError(
        `required option '${flag}' not specified (or name the objects with --prefix s3://bucket/prefix/)`,
      );
  }
}

export const restoreRequestCommand: CommandSpec = {
  name: 'restore-request',
  define: (program) =>
    addWhatOption(
      addCommonOptions(
        program
          .command('restore-request')
          .summary("request restores of each plate's tarballs from Glacier / Deep Archive")
          .description(
            "Sends RestoreObject for each plate's tarballs and their .md5 / .etag that are in an " +
              'archive class (GLACIER, DEEP_ARCHIVE, Intelligent-Tiering archive tiers); objects ' +
              'readable now need none. Already restored: the expiry is extended; already in ' +
              'progress: fine. --dry-run sends nothing and shows per plate the bytes to retrieve ' +
              'and, per tier, the expected wait and an estimate of the cost.\n' +
              "--sources: the plates' archived source objects instead; --prefix: every archived " +
              'object under s3://bucket/prefix/. --ledger FILE: a re-run retries only errors.',
          ),
        { platesOptional: true },
      ),
    )
      .addOption(tierOption())
      .option('--days <n>', 'days the restored copy stays readable', positiveInt('--days'), 7)
      .option('--dry-run', 'send nothing; show bytes, waits and cost estimates')
      .option('--prices <file>', 'JSON price table to use instead of the built-in one (README)')
      .option('--sources', "request the plates' archived SOURCE objects (live bucket) instead")
      .option(
        '--prefix <s3url>',
        'instead of plates: every archived object under s3://bucket/prefix/',
      )
      .addOption(
        globListOption(
          '--include <glob>',
          'with --prefix: only keys (below it) matching; repeatable',
        ),
      )
      .addOption(
        globListOption(
          '--exclude <glob>',
          'with --prefix: not keys (below it) matching; repeatable',
        ),
      )
      .option(
        '--ledger <file>',
        'with --sources or --prefix: JSON lines of each answer; a re-run retries only its errors',
      )
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup restore-request --plates plates.csv --project-name P --batch-id B --dry-run
  $ imgbackup restore-request --plates plates.csv --project-name P --batch-id B --tier Bulk --days 3
  $ imgbackup restore-request --sources --plates plates.csv --project-name P --batch-id B --ledger sources.jsonl
  $ imgbackup restore-request --prefix s3://bucket/some/prefix/ --include '**/*.tif' --tier Bulk --ledger restore.jsonl`,
      ),
  run: async (flags, signal, reporter) => {
    const f = flags as unknown as RestoreRequestFlags;
    const prices = loadPrices(f.prices);
    checkTarget(f);
    if (f.ledger && !f.sources && !f.prefix)
      throw new UsageError('--ledger goes with --sources or --prefix (tarball restores keep none)');
    const ctx = await buildContext(f, signal, reporter);
    if (f.prefix)
      return restoreRequestPrefix(ctx.store, {
        url: f.prefix,
        includes: f.include ?? [],
        excludes: f.exclude ?? [],
        tier: f.tier,
        days: f.days,
        dryRun: f.dryRun === true,
        prices,
        signal,
        onDone: reporter.onDone,
        ...(f.ledger ? { ledger: f.ledger } : {}),
      });
    const common = {
      ...runOptions(ctx, reporter),
      tier: f.tier,
      days: f.days,
      dryRun: f.dryRun === true,
      prices,
    };
    if (f.sources)
      return restoreRequestSources(ctx.store, {
        ...common,
        ...(f.ledger ? { ledger: f.ledger } : {}),
      });
    return restoreRequest(ctx.store, { ...common, what: f.what });
  },
};
