import { addCommonOptions, buildContext, type CommonFlags, runOptions } from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';
import type { PlateResult } from '../core/pool.js';
import { restoreStatusSources } from '../core/restore/source-status.js';
import { restoreStatus } from '../core/restore/status.js';
import { UsageError } from '../errors.js';
import { addWhatOption, durationOption, type RestoreCommonFlags } from './restore-flags.js';

interface RestoreStatusFlags extends CommonFlags, RestoreCommonFlags {
  wait?: boolean;
  timeout: number;
  poll: number;
  sources?: boolean;
  ledger?: string;
}

export const restoreStatusCommand: CommandSpec = {
  name: 'restore-status',
  define: (program) =>
    addWhatOption(
      addCommonOptions(
        program
          .command('restore-status')
          .summary("show whether each plate's tarballs are readable, restoring or not requested")
          .description(
            'Changes nothing. Per plate and tarball: readable now, restore in progress, ready ' +
              'until <expiry>, or not requested (S3 cannot tell that from an expired restore).\n' +
              '--wait polls, with growing intervals up to --poll, until every plate is readable ' +
              '(exit 0) or --timeout passes (the plates still waiting fail: exit 1).\n' +
              "--sources: counts of the plates' source objects archived / restoring / readable.",
          ),
      ),
    )
      .option('--wait', 'poll until every tarball is readable')
      .option('--sources', "the plates' SOURCE objects (live bucket) instead of the tarballs")
      .option('--ledger <file>', "with --sources: restore-request's ledger, to count its errors")
      .addOption(
        durationOption(
          '--timeout <duration>',
          'with --wait: give up after this long',
          12 * 3_600_000,
        ),
      )
      .addOption(
        durationOption(
          '--poll <duration>',
          'with --wait: the longest interval between polls',
          5 * 60_000,
        ),
      )
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup restore-status --plates plates.csv --project-name P --batch-id B
  $ imgbackup restore-status --plates plates.csv --project-name P --batch-id B --wait --timeout 12h --poll 5m`,
      ),
  run: async (flags, signal, reporter) => {
    const f = flags as unknown as RestoreStatusFlags;
    if (f.ledger && !f.sources) throw new UsageError('--ledger goes with --sources');
    const ctx = await buildContext(f, signal, reporter);
    const common = {
      ...runOptions(ctx, { onDone: reporter.onDone }),
      ...(f.wait ? { wait: { timeoutMs: f.timeout, pollMs: f.poll } } : {}),
      onPoll: (waiting: PlateResult[], nextMs: number) =>
        reporter.note(
          `restore-status: ${waiting.length} plate(s) not readable yet (${waiting
            .map((r) => `${r.plateId}: ${r.status}`)
            .join(', ')}); next look in ${Math.round(nextMs / 1000)} s`,
        ),
    };
    if (f.sources)
      return restoreStatusSources(ctx.store, {
        ...common,
        ...(f.ledger ? { ledger: f.ledger } : {}),
      });
    return restoreStatus(ctx.store, { ...common, what: f.what });
  },
};
