import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline/promises';
import { deletePlates, parsePlan } from '../core/delete.js';
import { UsageError } from '../errors.js';
import { addCommonOptions, buildContext, type CommonFlags } from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';
import { formatBytes } from '../cli/render.js';

interface DeleteFlags extends CommonFlags {
  dryRun?: boolean;
  yes?: boolean;
  forceUnverified?: boolean;
  plan?: string;
}

export const deleteCommand: CommandSpec = {
  name: 'delete',
  define: (program) =>
    addCommonOptions(
      program
        .command('delete')
        .summary('delete exactly the verified archive keys from the live bucket')
        .description(
          'Deletes the keys of each verified plate archive (from its verification record, or ' +
            '--plan), in batches of 1000, each with its expected ETag. Never deletes a prefix, a ' +
            "key outside the plate's four sources, or a key changed since the archive. Refuses " +
            'plates without a passing verification newer than their tarballs.',
        ),
    )
      .option('--dry-run', 'print what would be deleted; change nothing')
      .option('--yes', 'do not ask for confirmation (required when not interactive)')
      .option(
        '--plan <file>',
        'delete plan from collect-deletes (default: the verification records)',
      )
      .option('--force-unverified', 'delete plates without a current verification record')
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup delete --plates plates.csv --project-name P --batch-id B --dry-run
  $ imgbackup delete --plates plates.csv --project-name P --batch-id B --yes`,
      ),
  run: async (flags, signal, reporter) => {
    const f = flags as unknown as DeleteFlags;
    const ctx = await buildContext(f, signal, reporter);
    let plan;
    if (f.plan) {
      const text = await readFile(f.plan, 'utf8').catch(() => {
        throw new UsageError(`--plan ${f.plan}: cannot read it`);
      });
      plan = parsePlan(text, f.plan);
    }
    if (!f.dryRun && !f.yes && !process.stdin.isTTY) {
      throw new UsageError(
        'refusing to delete without --yes when not interactive (try --dry-run first)',
      );
    }
    return deletePlates(ctx.store, {
      layout: ctx.layout,
      plates: ctx.plates,
      maxProcs: f.maxProcs,
      signal,
      log: ctx.log,
      dryRun: f.dryRun === true,
      forceUnverified: f.forceUnverified === true,
      ...(plan ? { plan } : {}),
      ...(f.logDir ? { logDir: f.logDir } : {}),
      onStart: reporter.onStart,
      onDone: reporter.onDone,
      onWouldDelete: (plate, bucket, key, size) =>
        reporter.note(`would delete s3://${bucket}/${key} (${size} B) [${plate}]`, 'stdout'),
      confirm: async (t) => {
        if (f.yes) return true;
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await rl.question(
          `Delete ${t.keys} keys (${formatBytes(t.bytes)}) of ${t.plates} plate(s) from s3://${ctx.layout.bucket}? [y/N] `,
        );
        rl.close();
        return /^y(es)?$/i.test(answer.trim());
      },
    });
  },
};
