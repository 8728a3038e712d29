import { collectDeletes } from '../core/delete.js';
import { addCommonOptions, buildContext, type CommonFlags, runOptions } from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';

export function defaultPlanPath(out: string): string {
  return `${out.replace(/\.sh$/, '')}.plan.jsonl`;
}

export const collectDeletesCommand: CommandSpec = {
  name: 'collect-deletes',
  define: (program) =>
    addCommonOptions(
      program
        .command('collect-deletes')
        .summary('write a delete script and a delete plan of the verified keys')
        .description(
          'Writes --out, a script of `aws s3api delete-objects` lines naming exactly each ' +
            "verified plate's archived keys (with version ids on a versioned bucket, and ETags), " +
            'at most 1000 keys a line, for `parallel -a`; and a delete plan (JSON lines: plate, ' +
            'bucket, key, size, etag, versionId) of the same keys. Both come from the ' +
            'verification records. Nothing is written unless every plate is verified.',
        ),
    )
      .option('--out <file>', 'concatenated delete script', 'delete_s3.sh')
      .option('--plan <file>', 'delete plan (default: --out with .plan.jsonl)')
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup collect-deletes --plates plates.csv --project-name P --batch-id B --out delete_s3.sh
  $ imgbackup delete --plates plates.csv --project-name P --batch-id B --plan delete_s3.plan.jsonl`,
      ),
  run: async (flags, signal, reporter) => {
    const f = flags as unknown as CommonFlags & { out: string; plan?: string };
    const ctx = await buildContext(f, signal, reporter);
    const planOut = f.plan ?? defaultPlanPath(f.out);
    const { results, written } = await collectDeletes(ctx.store, {
      ...runOptions(ctx, reporter),
      out: f.out,
      planOut,
    });
    reporter.note(
      written
        ? `wrote ${f.out} and ${planOut}`
        : `nothing written: every plate must be verified (fix or remove the failed plates)`,
    );
    return results;
  },
};
