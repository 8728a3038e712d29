import { freeBytes, plan, tmpdirNeeded } from '../core/plan.js';
import {
  addCommonOptions,
  buildContext,
  defaultTmpdir,
  type CommonFlags,
  runOptions,
} from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';
import { formatBytes } from '../cli/render.js';

interface PlanFlags extends CommonFlags {
  tmpdir: string;
}

export const planCommand: CommandSpec = {
  name: 'plan',
  define: (program) =>
    addCommonOptions(
      program
        .command('plan')
        .summary('show each plate: source files and bytes, state, tmpdir space needed')
        .description(
          'Changes nothing. For each plate of the CSV: its source files and bytes, its state ' +
            '(not archived, partial, archived, verified, deleted), and the tmpdir space archive ' +
            'would need at --max-procs N (the N largest plates still to archive, both tarballs ' +
            'each), compared with the free space of --tmpdir.',
        ),
    )
      .option('--tmpdir <dir>', 'local directory archive would write tarballs to', defaultTmpdir())
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup plan --plates plates.csv --project-name P --batch-id B --max-procs 10 --tmpdir ~/ebs_tmp
  $ imgbackup plan --plates plates.csv --project-name P --batch-id B --json`,
      ),
  run: async (flags, signal, reporter) => {
    const f = flags as unknown as PlanFlags;
    const ctx = await buildContext(f, signal, reporter);
    // no "started" lines: plan only reads, and each plate's line says where it stands
    const results = await plan(ctx.store, runOptions(ctx, { onDone: reporter.onDone }));
    const needed = tmpdirNeeded(results, f.maxProcs);
    const free = await freeBytes(f.tmpdir);
    const enough = free === undefined ? undefined : free >= needed;
    reporter.footer(
      `tmpdir: archive at --max-procs ${f.maxProcs} needs at most ${formatBytes(needed)} in ${f.tmpdir}; ` +
        (free === undefined
          ? 'its free space cannot be read (does it exist?)'
          : `${formatBytes(free)} free${enough ? '' : ' — NOT ENOUGH: lower --max-procs or free space'}`),
      {
        tmpdir: {
          path: f.tmpdir,
          maxProcs: f.maxProcs,
          neededBytes: needed,
          freeBytes: free ?? null,
          enough: enough ?? null,
        },
      },
    );
    return results;
  },
};
