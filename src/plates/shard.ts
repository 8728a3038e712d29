import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';

/**
 * Where a shard's index came from. Engines that run N copies of one container give each copy an
 * index (AWS Batch array jobs, Kubernetes Indexed Jobs); a user running hosts by hand gives --shard.
 */
export type ShardSource = '--shard' | 'AWS_BATCH_JOB_ARRAY_INDEX' | 'JOB_COMPLETION_INDEX';

/** This run's part of the plates CSV: the plates whose shardOf(plateId, count) is index. */
export interface Shard {
  index: number;
  count: number;
  source: ShardSource;
}

/** The environment variables a shard is read from (README "Shards"), in the order they are read. */
export const SHARD_ENV = [
  'AWS_BATCH_JOB_ARRAY_INDEX',
  'AWS_BATCH_JOB_ARRAY_SIZE',
  'JOB_COMPLETION_INDEX',
  'IMGBACKUP_SHARD_COUNT',
] as const;

/**
 * A plate's shard: the first 8 bytes of sha256(plate_id as UTF-8), read as a big-endian unsigned
 * integer, modulo count. It depends on the plate id alone, so CSV order, other rows and the host
 * never move a plate, and users can compute it themselves (README gives a one-line check).
 */
export function shardOf(plateId: string, count: number): number {
  const digest = createHash('sha256').update(plateId, 'utf8').digest();
  return Number(digest.readBigUInt64BE(0) % BigInt(count));
}

export function platesOfShard<T extends { plateId: string }>(
  plates: readonly T[],
  shard: Shard,
): T[] {
  return plates.filter((p) => shardOf(p.plateId, shard.count) === shard.index);
}

/** The run's one line about its shard, e.g. "shard 2/4 (JOB_COMPLETION_INDEX): 3 of 12 plates". */
export function shardLine(shard: Shard, kept: number, total: number): string {
  return `shard ${shard.index}/${shard.count} (${shard.source}): ${kept} of ${total} plates in the CSV`;
}

export interface ShardFlags {
  /** --shard INDEX/COUNT */
  shard?: string;
  /** --shard-count N */
  shardCount?: string;
}

interface Given {
  value: number;
  /** How the input is named in messages: `--shard 1/4`, `JOB_COMPLETION_INDEX=3`. */
  said: string;
  from: string;
}

/** A whole number >= 0 as written: digits only, no sign, no exponent, no spaces. */
function wholeNumber(text: string, said: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n))
    throw new UsageError(`${said}: not a whole number (expected digits such as 0, 3 or 12)`);
  return n;
}

/** Every given value must agree; the first is the answer. */
function agreed(given: Given[], what: string): Given | undefined {
  const [first, ...rest] = given;
  const other = rest.find((g) => g.value !== first?.value);
  if (first && other)
    throw new UsageError(
      `${first.said} and ${other.said} disagree on the shard ${what}; give one, or make them equal`,
    );
  return first;
}

function fromEnv(env: NodeJS.ProcessEnv, name: (typeof SHARD_ENV)[number]): Given | undefined {
  const text = env[name];
  // an empty variable is an unset one (what `docker run -e NAME=` leaves behind)
  if (text === undefined || text === '') return undefined;
  const said = `${name}=${JSON.stringify(text)}`;
  return { value: wholeNumber(text, said), said, from: name };
}

/**
 * The shard of this run, from --shard INDEX/COUNT, or the engines' variables: the index from
 * AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX, the count from AWS_BATCH_JOB_ARRAY_SIZE,
 * --shard-count or IMGBACKUP_SHARD_COUNT. The flags win over IMGBACKUP_SHARD_COUNT (our own
 * default); an engine's own values are facts, so a flag that disagrees with one is refused. None of
 * them: undefined, every plate. Anything half-given or contradictory is a UsageError.
 */
export function resolveShard(flags: ShardFlags, env: NodeJS.ProcessEnv): Shard | undefined {
  const indexes: Given[] = [];
  const counts: Given[] = [];
  if (flags.shard !== undefined) {
    const said = `--shard ${flags.shard}`;
    const m = /^(\d+)\/(\d+)$/.exec(flags.shard);
    if (!m)
      throw new UsageError(`${said}: expected INDEX/COUNT such as 0/4 (INDEX from 0 to COUNT-1)`);
    indexes.push({ value: wholeNumber(m[1]!, said), said, from: '--shard' });
    counts.push({ value: wholeNumber(m[2]!, said), said, from: '--shard' });
  }
  if (flags.shardCount !== undefined) {
    const said = `--shard-count ${flags.shardCount}`;
    counts.push({ value: wholeNumber(flags.shardCount, said), said, from: '--shard-count' });
  }
  const ownDefault = fromEnv(env, 'IMGBACKUP_SHARD_COUNT');
  if (ownDefault && counts.length === 0) counts.push(ownDefault);
  for (const name of ['AWS_BATCH_JOB_ARRAY_INDEX', 'JOB_COMPLETION_INDEX'] as const) {
    const g = fromEnv(env, name);
    if (g) indexes.push(g);
  }
  const size = fromEnv(env, 'AWS_BATCH_JOB_ARRAY_SIZE');
  if (size) counts.push(size);

  const index = agreed(indexes, 'index');
  const count = agreed(counts, 'count');
  if (!index && !count) return undefined;
  if (!index)
    throw new UsageError(
      `${count!.said} gives a shard count but no shard index: pass --shard INDEX/${count!.value}, ` +
        'or run where AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX is set',
    );
  if (!count)
    throw new UsageError(
      `${index.said} gives a shard index but no shard count: pass --shard-count N or set ` +
        "IMGBACKUP_SHARD_COUNT=N (N: the array size, or the Job's completions)",
    );
  if (count.value < 1) throw new UsageError(`${count.said}: the shard count must be 1 or more`);
  if (index.value >= count.value)
    throw new UsageError(
      `${index.said}: the shard index must be below the count ${count.value}${index.said === count.said ? '' : ` (${count.said})`}, from 0 to ${count.value - 1}`,
    );
  return { index: index.value, count: count.value, source: index.from as ShardSource };
}
