import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { createReporter, progressLine } from '../../src/cli/reporter.js';

function sink() {
  const s = new PassThrough() as PassThrough & { text: () => string; columns?: number };
  let buf = '';
  s.on('data', (d: Buffer) => (buf += d.toString()));
  s.text = () => buf;
  return s;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const result = (plateId: string) => ({
  plateId,
  tag: `T_${plateId}`,
  status: 'archived' as const,
  files: 1,
  bytesIn: 10,
  bytesOut: 5,
  seconds: 1,
});

test('progressLine: bytes done / total, percent, MB/s, ETA', () => {
  assert.equal(
    progressLine('p1', { total: 100e6, done: 25e6, started: 0 }, 5000),
    'p1: 25.0 MB / 100.0 MB 25% 5.0 MB/s ETA 0:15',
  );
  assert.equal(
    progressLine('p1', { total: 10e9, done: 1e6, started: 0 }, 1000),
    'p1: 1.0 MB / 10.0 GB 0% 1.0 MB/s ETA 2:46:39',
  );
});

test('without a TTY: a plain progress line per running plate each period', async () => {
  const err = sink();
  const out = sink();
  const r = createReporter({ out, err, tty: false, plainMs: 30 });
  r.setTotal(2);
  r.onPlan('p1', 1000);
  r.progress('p1', 400);
  await sleep(80);
  r.onDone(result('p1'));
  r.close();
  assert.match(err.text(), /^p1: 400 B \/ 1\.0 kB 40% /m);
  assert.ok(!err.text().includes('\x1b['), 'no cursor movement without a TTY');
  assert.equal(out.text(), '');
});

test('--quiet: no progress at all', async () => {
  const err = sink();
  const r = createReporter({ err, out: sink(), quiet: true, tty: true, redrawMs: 10, plainMs: 10 });
  r.onPlan('p1', 1000);
  r.progress('p1', 400);
  await sleep(40);
  r.close();
  assert.equal(err.text(), '');
});

test('on a TTY: redrawn in place, ends with the final state and a newline', async () => {
  const err = sink();
  err.columns = 100;
  const r = createReporter({ err, out: sink(), tty: true, redrawMs: 10 });
  r.setTotal(1);
  r.onStart({ plateId: 'p1', plateIdFull: 'p1', line: 2 });
  r.onPlan('p1', 1000);
  r.progress('p1', 500);
  await sleep(40);
  r.onDone(result('p1'));
  r.close();
  const text = err.text();
  assert.match(text, /p1: 500 B \/ 1\.0 kB 50% /);
  assert.ok(text.includes('\x1b[2A\r\x1b[J'), 'moves up over the two lines it drew');
  assert.ok(text.endsWith('plates: 1/1 done, 0 running\n'), JSON.stringify(text.slice(-80)));
});

test('a log line: above the live display (cleared, written, redrawn), and shown even with --quiet', () => {
  const err = sink();
  err.columns = 100;
  const r = createReporter({ err, out: sink(), tty: true, redrawMs: 1000 });
  r.setTotal(1);
  r.onPlan('p1', 1000);
  r.logLine('p1: waiting for tmpdir space');
  r.close();
  assert.equal(
    err.text(),
    '  p1: 0 B / 1.0 kB 0% 0.0 MB/s ETA --:--\nplates: 0/1 done, 1 running\n' +
      '\x1b[2A\r\x1b[J' +
      'p1: waiting for tmpdir space\n' +
      '  p1: 0 B / 1.0 kB 0% 0.0 MB/s ETA --:--\nplates: 0/1 done, 1 running\n' +
      '\x1b[2A\r\x1b[J' +
      '  p1: 0 B / 1.0 kB 0% 0.0 MB/s ETA --:--\nplates: 0/1 done, 1 running\n',
  );
  const quiet = sink();
  const q = createReporter({ err: quiet, out: sink(), quiet: true, tty: false });
  q.note('not shown');
  q.logLine('p1: shown');
  q.close();
  assert.equal(quiet.text(), 'p1: shown\n');
});
