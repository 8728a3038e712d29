import { verify } from '../core/verify.js';
import { addCommonOptions, buildContext, type CommonFlags, runOptions } from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';

export const verifyCommand: CommandSpec = {
  name: 'verify',
  define: (program) =>
    addCommonOptions(
      program
        .command('verify')
        .summary('prove each plate archive complete and write its verification record')
        .description(
          'Checks that both listings exist and are equal, every output exists, each tarball ETag ' +
            'matches its .etag, and the sources on S3 still match the listing (files added or ' +
            'changed since the archive are named; they are never deleted). --deep also streams ' +
            'each tarball back and checks its md5, its members and each member against its ' +
            'source ETag. A pass writes projects/P/workspace/backup/T_verified.json; a failure ' +
            'replaces it with a failed record.',
        ),
    )
      .option('--deep', 'stream every tarball back from S3 and check its content')
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup verify --plates plates.csv --project-name P --batch-id B
  $ imgbackup verify --plates plates.csv --project-name P --batch-id B --deep --json`,
      ),
  run: async (flags, signal, reporter, version) => {
    const f = flags as unknown as CommonFlags & { deep?: boolean };
    const ctx = await buildContext(f, signal, reporter);
    return verify(ctx.store, {
      ...runOptions(ctx, reporter),
      deep: f.deep === true,
      toolVersion: version,
    });
  },
};
