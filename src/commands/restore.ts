import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { addCommonOptions, buildContext, type CommonFlags, runOptions } from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';
import { restore, type Destination } from '../core/restore/restore.js';
import { UsageError } from '../errors.js';
import { addWhatOption, globListOption, type RestoreCommonFlags } from './restore-flags.js';

interface RestoreFlags extends CommonFlags, RestoreCommonFlags {
  toS3?: boolean;
  toDir?: string;
  toBucket?: string;
  toPrefix?: string;
  include?: string[];
  exclude?: string[];
  overwrite?: boolean;
  dryRun?: boolean;
}

/** --to-s3 / --to-dir and their companions, checked before anything is read or written. */
async function destination(f: RestoreFlags): Promise<Destination> {
  if (!f.toS3 === !f.toDir) throw new UsageError('give exactly one of --to-s3 and --to-dir DIR');
  if (f.toDir) {
    if (f.toBucket || f.toPrefix !== undefined)
      throw new UsageError('--to-bucket and --to-prefix go with --to-s3, not --to-dir');
    const dir = resolve(f.toDir);
    try {
      if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
      await access(dir, constants.W_OK);
    } catch (err) {
      throw new UsageError(
        `--to-dir ${f.toDir}: not a writable directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); create it or pass another`,
      );
    }
    return { kind: 'dir', dir };
  }
  const prefix = f.toPrefix ?? '';
  if (prefix !== '' && !prefix.endsWith('/'))
    throw new UsageError(`--to-prefix ${JSON.stringify(prefix)} must end with "/"`);
  return { kind: 's3', bucket: f.toBucket ?? f.bucket, prefix };
}

export const restoreCommand: CommandSpec = {
  name: 'restore',
  define: (program) =>
    addWhatOption(
      addCommonOptions(
        program
          .command('restore')
          .summary("stream each plate's readable tarballs back to S3 or to a directory, verified")
          .description(
            'Streams each tarball (GET, md5, gunzip, tar) and writes every member back to its ' +
              'key in the live bucket (--to-s3; or under --to-bucket / --to-prefix) or under DIR ' +
              '(--to-dir: the tree `tar xzf X --strip-components=1` makes). Checks on the way: the ' +
              "tarball's md5 equals X.md5, each member's size and bytes match the archive's ETag " +
              'record, the member list equals the tar listing. Never overwrites: same bytes are ' +
              'skipped (a re-run resumes), other bytes are reported and left unless --overwrite. ' +
              'Tarballs in Glacier must be restored first (imgbackup restore-request).',
          ),
      ),
    )
      .option('--to-s3', 'write each member back to S3 (default: its original key in --bucket)')
      .option('--to-dir <dir>', 'write the files under this directory')
      .option('--to-bucket <name>', 'with --to-s3: this bucket instead of --bucket')
      .option(
        '--to-prefix <prefix>',
        'with --to-s3: put this before each original key (ends with /)',
      )
      .addOption(
        globListOption(
          '--include <glob>',
          'restore only paths matching (repeatable; ** spans folders)',
        ),
      )
      .addOption(globListOption('--exclude <glob>', 'leave out paths matching (repeatable)'))
      .option('--overwrite', 'replace files or objects that exist with other bytes')
      .option('--dry-run', 'write nothing; show what each plate would restore')
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup restore --plates plates.csv --project-name P --batch-id B --to-s3
  $ imgbackup restore --plates plates.csv --project-name P --batch-id B --to-dir /mnt/restore \\
      --include '**/*.csv' --what images`,
      ),
  run: async (flags, signal, reporter, version) => {
    const f = flags as unknown as RestoreFlags;
    const to = await destination(f);
    const ctx = await buildContext(f, signal, reporter);
    reporter.setTotal(ctx.plates.length);
    return restore(ctx.store, {
      ...runOptions(ctx, reporter),
      what: f.what,
      to,
      includes: f.include ?? [],
      excludes: f.exclude ?? [],
      overwrite: f.overwrite === true,
      dryRun: f.dryRun === true,
      toolVersion: version,
      onPlan: reporter.onPlan,
      progress: reporter.progress,
    });
  },
};
