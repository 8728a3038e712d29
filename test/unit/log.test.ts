// Log records as a person reads them on stderr: one line, the plate first.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  createLogger,
  humanLine,
  humanStream,
  plateLogger,
  withPlateLog,
} from '../../src/log/log.js';

test('humanLine: plate, message, then each field; long lists cut; empty ones left out', () => {
  assert.equal(
    humanLine({
      level: 40,
      time: 1,
      plate: '20586',
      msg: 'sources changed since the archive',
      added: ['a b.tif'],
      changed: [],
    }),
    '20586: sources changed since the archive: added (1): "a b.tif"',
  );
  assert.equal(
    humanLine({ level: 40, msg: 'waiting', need: 12, keys: ['a', 'b', 'c', 'd', 'e'] }),
    'imgbackup: waiting: need: 12; keys (5): "a", "b", "c" and 2 more',
  );
  assert.equal(
    humanLine({
      level: 50,
      plate: 'p',
      msg: 'unexpected error',
      err: { type: 'Error', message: 'boom' },
    }),
    'p: error: unexpected error: boom',
  );
  assert.equal(humanLine({ level: 30, msg: 'x', o: { a: 1 } }), 'imgbackup: x: o: {"a":1}');
});

test('a logger and its plate loggers write human lines where they are told, at warn and above', () => {
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l) });
  log.info('not shown');
  plateLogger(log, '2058').warn({ path: '/t/x.lock', pid: 7 }, 'removing a stale lock');
  log.error({ err: new Error('kaput') }, 'unexpected error');
  assert.deepEqual(lines, [
    '2058: removing a stale lock: path: /t/x.lock; pid: 7',
    'imgbackup: error: unexpected error: kaput',
  ]);
});

test('humanStream shows a line that is not a record as it is', () => {
  const lines: string[] = [];
  humanStream((l) => lines.push(l)).write('not json\n{"level":40,"msg":"m"}\n');
  assert.deepEqual(lines, ['not json', 'imgbackup: m']);
});

test('withPlateLog writes the plate log file and closes it when the plate settles', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'imgbackup-plate-log-'));
  const base = createLogger({ write: () => {} });
  const fds = () => readdirSync('/proc/self/fd').length;
  const before = fds();
  let during = 0;
  await assert.rejects(
    withPlateLog(base, 'P1', dir, async (log) => {
      log.info('started');
      during = fds();
      throw new Error('plate failed');
    }),
    /plate failed/,
  );
  assert.equal(during, before + 1);
  assert.equal(fds(), before);
  const lines = readFileSync(join(dir, 'P1.log'), 'utf8').trim().split('\n');
  assert.equal(lines.length, 1);
  assert.equal((JSON.parse(lines[0]!) as { msg: string }).msg, 'started');
});
