import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { deletePlates, parsePlan, writeAtomically } from '../core/delete.js';
import type { PlateResult } from '../core/pool.js';
import { UsageError } from '../errors.js';
import { addCommonOptions, buildContext, type CommonFlags, runOptions } from '../cli/common.js';
import type { CommandSpec } from '../cli/command-spec.js';
import { formatBytes } from '../cli/render.js';

interface DeleteFlags extends CommonFlags {
  dryRun?: boolean;
  yes?: boolean;
  forceUnverified?: boolean;
  plan?: string;
  list?: string;
}

/** Keys shown per plate by --dry-run; --list FILE has them all (a real plate has ~20,000). */
const EXAMPLE_KEYS = 3;

interface WouldDelete {
  plate: string;
  bucket: string;
  key: string;
  size: number;
}

/** --dry-run's lines for one plate: its keys and bytes, a few examples, where the rest are. */
export function dryRunSummary(
  plateId: string,
  bucket: string,
  keys: WouldDelete[],
  listFile?: string,
): string[] {
  const bytes = keys.reduce((n, k) => n + k.size, 0);
  const lines = [
    `${plateId}: would delete ${keys.length} keys (${formatBytes(bytes)}) from s3://${bucket}${keys.length ? ', e.g.:' : ''}`,
    ...keys.slice(0, EXAMPLE_KEYS).map((k) => `  s3://${k.bucket}/${k.key} (${k.size} B)`),
  ];
  const more = keys.length - EXAMPLE_KEYS;
  if (more > 0)
    lines.push(
      `  and ${more} more (${listFile ? `all in ${listFile}` : '--list FILE lists every key'})`,
    );
  return lines;
}

/** --list FILE: every key a dry run would delete, one JSON object a line, in CSV plate order. */
export function listText(keys: WouldDelete[]): string {
  return keys
    .map(
      (k) => `${JSON.stringify({ plate: k.plate, bucket: k.bucket, key: k.key, size: k.size })}\n`,
    )
    .join('');
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
            '--plan), in batches of 1000, each with its expected ETag (and on a versioned bucket ' +
            'its archived version id, so the bytes are freed and later versions kept). Never ' +
            "deletes a prefix, a key outside the plate's four sources, or a key changed since the " +
            'archive. Refuses plates without a passing verification newer than their tarballs.',
        ),
    )
      .option('--dry-run', 'print what would be deleted; change nothing')
      .option('--yes', 'do not ask for confirmation (required when not interactive)')
      .option(
        '--plan <file>',
        'delete plan from collect-deletes (default: the verification records)',
      )
      .option(
        '--list <file>',
        'with --dry-run: write every key that would be deleted to this file (JSON lines: plate, bucket, key, size)',
      )
      .option('--force-unverified', 'delete plates without a current verification record')
      .addHelpText(
        'after',
        `
Examples:
  $ imgbackup delete --plates plates.csv --project-name P --batch-id B --dry-run --list keys.jsonl
  $ imgbackup delete --plates plates.csv --project-name P --batch-id B --yes`,
      ),
  run: async (flags, signal, reporter) => {
    const f = flags as unknown as DeleteFlags;
    if (f.list) {
      if (!f.dryRun) throw new UsageError('--list FILE goes with --dry-run');
      // before any S3 work: a list that cannot be written is a usage error, not a late failure
      const dir = dirname(f.list);
      await access(dir, constants.W_OK).catch(() => {
        throw new UsageError(`--list ${f.list}: cannot write in ${dir} (does it exist?)`);
      });
    }
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
    const would = new Map<string, WouldDelete[]>();
    const results: PlateResult[] = await deletePlates(ctx.store, {
      ...runOptions(ctx, reporter),
      dryRun: f.dryRun === true,
      forceUnverified: f.forceUnverified === true,
      ...(plan ? { plan } : {}),
      onNote: (text) => reporter.note(text),
      onWouldDelete: (plate, bucket, key, size) => {
        const keys = would.get(plate) ?? [];
        if (keys.length === 0) would.set(plate, keys);
        keys.push({ plate, bucket, key, size });
      },
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
    if (f.dryRun) {
      for (const r of results.filter((x) => x.status === 'planned')) {
        const keys = would.get(r.plateId) ?? [];
        for (const l of dryRunSummary(r.plateId, ctx.layout.bucket, keys, f.list))
          reporter.note(l, 'stdout');
      }
      if (f.list) {
        const all = results.flatMap((r) => would.get(r.plateId) ?? []);
        await writeAtomically(f.list, listText(all));
        reporter.note(`wrote the ${all.length} keys a delete would remove to ${f.list}`);
      }
    }
    return results;
  },
};
