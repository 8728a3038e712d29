// Shards (README "Shards"): the plate → shard hash with exact values, and how --shard,
// --shard-count and the engines' variables give this run's shard, every refusal one line.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsageError } from '../../src/errors.js';
import {
  platesOfShard,
  resolveShard,
  shardLine,
  shardOf,
  type ShardFlags,
} from '../../src/plates/shard.js';

describe('shardOf: first 8 bytes of sha256(plate_id) as a big-endian integer, mod count', () => {
  // Expected values from python3: int.from_bytes(hashlib.sha256(id.encode()).digest()[:8], 'big')
  test('exact shards of known ids', () => {
    // sha256("2058") starts e22e9c22f92b8273
    assert.deepEqual(
      [2, 3, 4, 12, 10000].map((n) => shardOf('2058', n)),
      [1, 0, 3, 3, 3059],
    );
    assert.deepEqual(
      [2, 3, 4, 12, 10000].map((n) => shardOf('20586', n)),
      [1, 1, 3, 7, 7727],
    );
    assert.deepEqual(
      [2, 3, 4, 12, 10000].map((n) => shardOf('2058-old', n)),
      [0, 0, 2, 6, 7198],
    );
    assert.deepEqual(
      [2, 3, 4, 12, 10000].map((n) => shardOf('BR00092655', n)),
      [1, 2, 3, 11, 3703],
    );
    // UTF-8, not UTF-16 or Latin-1
    assert.deepEqual(
      [2, 3, 4, 12, 10000].map((n) => shardOf('Ünïcødé', n)),
      [0, 1, 0, 4, 5444],
    );
  });

  test('count 1 puts every plate in shard 0', () => {
    for (const id of ['2058', '20586', 'BR00092655']) assert.equal(shardOf(id, 1), 0);
  });

  test('platesOfShard keeps the CSV order and depends on nothing but the ids', () => {
    const plates = ['2058', '20586', '2058-old', 'BR00092655'].map((plateId) => ({ plateId }));
    const shard = (index: number) => ({ index, count: 4, source: '--shard' as const });
    assert.deepEqual(
      platesOfShard(plates, shard(3)).map((p) => p.plateId),
      ['2058', '20586', 'BR00092655'],
    );
    assert.deepEqual(
      platesOfShard([...plates].reverse(), shard(3)).map((p) => p.plateId),
      ['BR00092655', '20586', '2058'],
    );
    assert.deepEqual(
      platesOfShard(plates, shard(2)).map((p) => p.plateId),
      ['2058-old'],
    );
    assert.deepEqual(platesOfShard(plates, shard(0)), []);
  });

  test('shardLine', () => {
    assert.equal(
      shardLine({ index: 2, count: 4, source: 'JOB_COMPLETION_INDEX' }, 3, 12),
      'shard 2/4 (JOB_COMPLETION_INDEX): 3 of 12 plates in the CSV',
    );
  });
});

describe('resolveShard', () => {
  const ok = (flags: ShardFlags, env: NodeJS.ProcessEnv = {}) => resolveShard(flags, env);

  test('nothing given: no shard', () => {
    assert.equal(ok({}), undefined);
    assert.equal(ok({}, { PATH: '/bin', JOB_COMPLETION_INDEX: '' }), undefined);
  });

  test('--shard INDEX/COUNT', () => {
    assert.deepEqual(ok({ shard: '0/4' }), { index: 0, count: 4, source: '--shard' });
    assert.deepEqual(ok({ shard: '3/4' }), { index: 3, count: 4, source: '--shard' });
    assert.deepEqual(ok({ shard: '0/1' }), { index: 0, count: 1, source: '--shard' });
  });

  test('AWS Batch array job: index and size from the engine', () => {
    assert.deepEqual(ok({}, { AWS_BATCH_JOB_ARRAY_INDEX: '7', AWS_BATCH_JOB_ARRAY_SIZE: '10' }), {
      index: 7,
      count: 10,
      source: 'AWS_BATCH_JOB_ARRAY_INDEX',
    });
  });

  test('Kubernetes Indexed Job: JOB_COMPLETION_INDEX with --shard-count or IMGBACKUP_SHARD_COUNT', () => {
    const want = { index: 2, count: 5, source: 'JOB_COMPLETION_INDEX' };
    assert.deepEqual(ok({ shardCount: '5' }, { JOB_COMPLETION_INDEX: '2' }), want);
    assert.deepEqual(ok({}, { JOB_COMPLETION_INDEX: '2', IMGBACKUP_SHARD_COUNT: '5' }), want);
  });

  test('the flags win over IMGBACKUP_SHARD_COUNT', () => {
    assert.deepEqual(
      ok({ shardCount: '5' }, { JOB_COMPLETION_INDEX: '2', IMGBACKUP_SHARD_COUNT: '8' }),
      { index: 2, count: 5, source: 'JOB_COMPLETION_INDEX' },
    );
    assert.deepEqual(ok({ shard: '1/3' }, { IMGBACKUP_SHARD_COUNT: '8' }), {
      index: 1,
      count: 3,
      source: '--shard',
    });
  });

  test('a flag that agrees with the engine is accepted; the flag is named as the source', () => {
    assert.deepEqual(
      ok({ shard: '7/10' }, { AWS_BATCH_JOB_ARRAY_INDEX: '7', AWS_BATCH_JOB_ARRAY_SIZE: '10' }),
      { index: 7, count: 10, source: '--shard' },
    );
  });

  /** Asserts a UsageError whose message is exactly `message`, on one line. */
  function refuses(flags: ShardFlags, env: NodeJS.ProcessEnv, message: string): void {
    assert.throws(
      () => resolveShard(flags, env),
      (err: unknown) => {
        assert.ok(err instanceof UsageError, `not a UsageError: ${String(err)}`);
        assert.equal(err.message, message);
        assert.ok(!err.message.includes('\n'));
        return true;
      },
    );
  }

  test('refuses a malformed --shard', () => {
    for (const v of ['4', '1/', '/4', '1/4/2', ' 1/4', '-1/4', '1.0/4', 'a/b', '1:4', '']) {
      refuses(
        { shard: v },
        {},
        `--shard ${v}: expected INDEX/COUNT such as 0/4 (INDEX from 0 to COUNT-1)`,
      );
    }
  });

  test('refuses an index not below the count, and a count of 0', () => {
    refuses(
      { shard: '4/4' },
      {},
      '--shard 4/4: the shard index must be below the count 4, from 0 to 3',
    );
    refuses({ shard: '0/0' }, {}, '--shard 0/0: the shard count must be 1 or more');
    refuses(
      {},
      { AWS_BATCH_JOB_ARRAY_INDEX: '10', AWS_BATCH_JOB_ARRAY_SIZE: '10' },
      'AWS_BATCH_JOB_ARRAY_INDEX="10": the shard index must be below the count 10 (AWS_BATCH_JOB_ARRAY_SIZE="10"), from 0 to 9',
    );
    refuses(
      { shardCount: '0' },
      { JOB_COMPLETION_INDEX: '0' },
      '--shard-count 0: the shard count must be 1 or more',
    );
  });

  test('refuses values that are not whole numbers', () => {
    refuses(
      {},
      { JOB_COMPLETION_INDEX: 'two', IMGBACKUP_SHARD_COUNT: '4' },
      'JOB_COMPLETION_INDEX="two": not a whole number (expected digits such as 0, 3 or 12)',
    );
    refuses(
      { shardCount: '4.5' },
      { JOB_COMPLETION_INDEX: '1' },
      '--shard-count 4.5: not a whole number (expected digits such as 0, 3 or 12)',
    );
    refuses(
      {},
      { JOB_COMPLETION_INDEX: '1', IMGBACKUP_SHARD_COUNT: ' 4' },
      'IMGBACKUP_SHARD_COUNT=" 4": not a whole number (expected digits such as 0, 3 or 12)',
    );
    refuses(
      {},
      { AWS_BATCH_JOB_ARRAY_INDEX: '1e2', AWS_BATCH_JOB_ARRAY_SIZE: '200' },
      'AWS_BATCH_JOB_ARRAY_INDEX="1e2": not a whole number (expected digits such as 0, 3 or 12)',
    );
    refuses(
      { shard: '99999999999999999999/99999999999999999999' },
      {},
      '--shard 99999999999999999999/99999999999999999999: not a whole number (expected digits such as 0, 3 or 12)',
    );
  });

  test('refuses an index without a count, and a count without an index', () => {
    refuses(
      {},
      { JOB_COMPLETION_INDEX: '3' },
      'JOB_COMPLETION_INDEX="3" gives a shard index but no shard count: pass --shard-count N or set IMGBACKUP_SHARD_COUNT=N (N: the array size, or the Job\'s completions)',
    );
    refuses(
      {},
      { AWS_BATCH_JOB_ARRAY_INDEX: '3' },
      'AWS_BATCH_JOB_ARRAY_INDEX="3" gives a shard index but no shard count: pass --shard-count N or set IMGBACKUP_SHARD_COUNT=N (N: the array size, or the Job\'s completions)',
    );
    refuses(
      { shardCount: '4' },
      {},
      '--shard-count 4 gives a shard count but no shard index: pass --shard INDEX/4, or run where AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX is set',
    );
    refuses(
      {},
      { IMGBACKUP_SHARD_COUNT: '4' },
      'IMGBACKUP_SHARD_COUNT="4" gives a shard count but no shard index: pass --shard INDEX/4, or run where AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX is set',
    );
  });

  test('refuses flags that disagree with the engine, or with each other', () => {
    refuses(
      { shard: '1/4' },
      { JOB_COMPLETION_INDEX: '2', IMGBACKUP_SHARD_COUNT: '4' },
      '--shard 1/4 and JOB_COMPLETION_INDEX="2" disagree on the shard index; give one, or make them equal',
    );
    refuses(
      { shard: '1/4' },
      { AWS_BATCH_JOB_ARRAY_INDEX: '1', AWS_BATCH_JOB_ARRAY_SIZE: '8' },
      '--shard 1/4 and AWS_BATCH_JOB_ARRAY_SIZE="8" disagree on the shard count; give one, or make them equal',
    );
    refuses(
      { shardCount: '4' },
      { AWS_BATCH_JOB_ARRAY_INDEX: '1', AWS_BATCH_JOB_ARRAY_SIZE: '8' },
      '--shard-count 4 and AWS_BATCH_JOB_ARRAY_SIZE="8" disagree on the shard count; give one, or make them equal',
    );
    refuses(
      { shard: '1/4', shardCount: '5' },
      {},
      '--shard 1/4 and --shard-count 5 disagree on the shard count; give one, or make them equal',
    );
    refuses(
      {},
      { AWS_BATCH_JOB_ARRAY_INDEX: '1', JOB_COMPLETION_INDEX: '2', IMGBACKUP_SHARD_COUNT: '4' },
      'AWS_BATCH_JOB_ARRAY_INDEX="1" and JOB_COMPLETION_INDEX="2" disagree on the shard index; give one, or make them equal',
    );
    // our own default never overrides the engine's size
    refuses(
      {},
      { AWS_BATCH_JOB_ARRAY_INDEX: '1', AWS_BATCH_JOB_ARRAY_SIZE: '8', IMGBACKUP_SHARD_COUNT: '4' },
      'IMGBACKUP_SHARD_COUNT="4" and AWS_BATCH_JOB_ARRAY_SIZE="8" disagree on the shard count; give one, or make them equal',
    );
  });
});
