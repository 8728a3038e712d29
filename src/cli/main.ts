import { Command, CommanderError } from 'commander';
import { archiveCommand } from '../commands/archive.js';
import { collectDeletesCommand } from '../commands/collect-deletes.js';
import { deleteCommand } from '../commands/delete.js';
import { planCommand } from '../commands/plan.js';
import { restoreCommand } from '../commands/restore.js';
import { restoreRequestCommand } from '../commands/restore-request.js';
import { restoreStatusCommand } from '../commands/restore-status.js';
import { verifyCommand } from '../commands/verify.js';
import { describeS3Failure } from '../core/preflight.js';
import { errorMessage } from '../errors.js';
import type { CommandSpec } from './command-spec.js';
import { exitCodeForError, exitCodeForOutputs, exitCodeForResults } from './exit-codes.js';
import { createInterrupts } from './interrupts.js';
import { summaryJson, summaryTable } from './render.js';
import { watchOutputs } from './outputs.js';
import { createReporter } from './reporter.js';
import { version, versionText } from './version.js';

const COMMANDS: CommandSpec[] = [
  planCommand,
  archiveCommand,
  verifyCommand,
  collectDeletesCommand,
  deleteCommand,
  restoreRequestCommand,
  restoreStatusCommand,
  restoreCommand,
];

/** Runs the CLI and returns the exit code; exits by itself only on a second signal. */
export async function main(argv: string[]): Promise<number> {
  const run = createInterrupts({
    say: (line) => process.stderr.write(`${line}\n`),
    exitNow: (code) => process.exit(code),
  });
  const onSignal = (sig: NodeJS.Signals) => run.onSignal(sig);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const outputs = watchOutputs(run.onOutputLost);

  let verbose = argv.includes('--verbose');
  let outcome: { code: number } = { code: 0 };
  const program = new Command('imgbackup')
    .description(
      'Archive microscopy plates from S3 into verified tar.gz tarballs in a cold bucket, ' +
        'prove the archive complete, then delete exactly what was archived.',
    )
    .version(versionText())
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');
  for (const spec of COMMANDS) {
    spec
      .define(program)
      .exitOverride()
      .action(async (flags: Record<string, unknown>) => {
        verbose = flags.verbose === true;
        run.enter('running');
        const reporter = createReporter({ json: flags.json === true, quiet: flags.quiet === true });
        let results;
        try {
          results = await spec.run(flags, run.signal, reporter, version());
        } finally {
          reporter.close();
        }
        run.enter('reporting');
        const code = exitCodeForResults(results, run.stoppedBy());
        if (flags.json) {
          const extra = Object.assign({}, ...reporter.footers.map((f) => f.data ?? {})) as Record<
            string,
            unknown
          >;
          process.stdout.write(`${summaryJson(spec.name, results, code, extra)}\n`);
        } else {
          process.stdout.write(summaryTable(results));
          for (const f of reporter.footers) process.stdout.write(`${f.text}\n`);
        }
        outcome = { code };
      });
  }
  let code: number;
  try {
    await program.parseAsync(argv);
    code = outcome.code;
  } catch (err) {
    if (!(err instanceof CommanderError)) reportFailure(err, verbose);
    code = exitCodeForError(err, err instanceof CommanderError ? undefined : run.stoppedBy());
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  await outputs.settled();
  return exitCodeForOutputs(code, outputs.lost());
}

/** The one line a failed command prints (and its stack with --verbose). */
function reportFailure(err: unknown, verbose: boolean): void {
  const line = describeS3Failure(err, 'S3') ?? errorMessage(err);
  process.stderr.write(`imgbackup: ${line}\n`);
  if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
}
