import { addCommonOptions, buildContext, positiveInt, type CommonFlags } from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';
import { loadPrices } from '../core/restore/prices.js';
import { restoreRequest } from '../core/restore/request.js';
import { restoreRequestSources } from '../core/restore/source-request.js';
import { UsageError } from '../errors.js';
import { addWhatOption, tierOption, type RestoreCommonFlags, type Tier } from './restore-flags.js';

interface RestoreRequestFlags extends CommonFlags, RestoreCommonFlags {
  tier: Tier;
  days: number;
  dryRun?: boolean;
  prices?: string;
  sources?: boolean;
  ledger?: string;
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
            "Sends RestoreObject for each plate's tarballs and their .md5 / .etag that are in an\n" +
              'archive class (GLACIER, DEEP_ARCHIVE, Intelligent-Tiering archive tiers); objects\n' +
              'readable now need none. Already restored: the expiry is extended; already in\n' +
              'progress: fine. --dry-run sends nothing and shows per plate the bytes to retrieve\n' +
              'and, per tier, the expected wait and an estimate of the cost.',
          ),
      ),
    )
      .addOption(tierOption())
      .option('--days <n>', 'days the restored copy stays readable', positiveInt('--days'), 7)
      .option('--dry-run', 'send nothing; show bytes, waits and cost estimates')
      .option('--prices <file>', 'JSON price table to use instead of the built-in one (README)')
      .option('--sources', "request the plates' archived SOURCE objects (live bucket) instead")
      .option(
        '--ledger <file>',
        'with --sources: JSON lines of each answer; a re-run retries only its errors',
      )
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup restore-request --plates plates.csv --project-name P --batch-id B --dry-run
  $ imgbackup restore-request --plates plates.csv --project-name P --batch-id B --tier Bulk --days 3
  $ imgbackup restore-request --sources --plates plates.csv --project-name P --batch-id B --ledger sources.jsonl`,
      ),
  run: async (flags, signal, reporter) => {
    const f = flags as unknown as RestoreRequestFlags;
    const prices = loadPrices(f.prices);
    if (f.ledger && !f.sources)
      throw new UsageError('--ledger goes with --sources (tarball restores keep no ledger)');
    const ctx = await buildContext(f, signal);
    const common = {
      layout: ctx.layout,
      plates: ctx.plates,
      tier: f.tier,
      days: f.days,
      dryRun: f.dryRun === true,
      prices,
      maxProcs: f.maxProcs,
      signal,
      log: ctx.log,
      ...(f.logDir ? { logDir: f.logDir } : {}),
      onStart: reporter.onStart,
      onDone: reporter.onDone,
    };
    if (f.sources)
      return restoreRequestSources(ctx.store, {
        ...common,
        ...(f.ledger ? { ledger: f.ledger } : {}),
      });
    return restoreRequest(ctx.store, { ...common, what: f.what });
  },
};
