import { addCommonOptions, buildContext, positiveInt, type CommonFlags } from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';
import { loadPrices } from '../core/restore/prices.js';
import { restoreRequest } from '../core/restore/request.js';
import { addWhatOption, tierOption, type RestoreCommonFlags, type Tier } from './restore-flags.js';

interface RestoreRequestFlags extends CommonFlags, RestoreCommonFlags {
  tier: Tier;
  days: number;
  dryRun?: boolean;
  prices?: string;
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
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup restore-request --plates plates.csv --project-name P --batch-id B --dry-run
  $ imgbackup restore-request --plates plates.csv --project-name P --batch-id B --tier Bulk --days 3`,
      ),
  run: async (flags, signal, reporter) => {
    const f = flags as unknown as RestoreRequestFlags;
    const prices = loadPrices(f.prices);
    const ctx = await buildContext(f, signal);
    return restoreRequest(ctx.store, {
      layout: ctx.layout,
      plates: ctx.plates,
      what: f.what,
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
    });
  },
};
