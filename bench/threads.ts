// CPU per thread of an imgbackup run (issue 12): which thread carries how much per GB, and the
// ceiling that projects to more cores; from the sampler's per-thread readings and the plate logs.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmt } from './common.js';
import { CLK_TCK } from './measure.js';
import type { ThreadCpu } from './sampler.js';

/** --max-procs of the users' runs: the loops a process that gives each plate its own has. */
const PROJECTED_LOOPS = 10;
const PROJECTED_CORES = [2, 16, 64];
/** Threads named in the JSON, busiest first. */
const TOP_THREADS = 12;

export interface ThreadFigures {
  /** CPU-s per GB (10^9) of source: every thread of the command's tree. */
  totalPerGB: number;
  /** The busiest thread of the tree: CPU seconds, and CPU-s per GB of all the source. */
  busiestSeconds: number;
  busiestPerGB: number;
  /** The main thread of the node process (it moves every plate's bytes unless plates have loops of their own). */
  mainPerGB: number;
  /** Plates on loops of their own (threads named in the plate logs): the busiest one per GB it moved. */
  plateLoops: number;
  plateLoopPerGB?: number;
  /** GB/s: min(cores / totalPerGB, 1 / mainPerGB, loops / plateLoopPerGB) at PROJECTED_LOOPS. */
  ceilingGBps: Record<string, number>;
  /** The busiest threads: main, a plate's loop, or another (libuv's pool, V8's, the SDK's). */
  top: { tid: number; seconds: number; role: string }[];
}

/** Plate id -> {os thread id, source bytes}, from the plate logs' `tid` and "listed sources" lines. */
function plateThreads(logDir: string): Map<string, { tid?: number; bytes: number }> {
  const out = new Map<string, { tid?: number; bytes: number }>();
  const joblog = join(logDir, 'archive.joblog');
  if (!existsSync(joblog)) return out;
  for (const line of readFileSync(joblog, 'utf8').trim().split('\n').slice(1)) {
    const plateId = line.split('\t')[8] ?? '';
    const file = join(logDir, `${plateId}.log`);
    if (!existsSync(file)) continue;
    const entry: { tid?: number; bytes: number } = { bytes: 0 };
    for (const l of readFileSync(file, 'utf8').split('\n')) {
      if (!l) continue;
      const j = JSON.parse(l) as { tid?: number; msg?: string; bytes?: number };
      if (typeof j.tid === 'number') entry.tid = j.tid;
      if (j.msg === 'listed sources' && typeof j.bytes === 'number') entry.bytes = j.bytes;
    }
    out.set(plateId, entry);
  }
  return out;
}

export function threadFigures(
  threads: ThreadCpu[],
  cpuSeconds: number,
  sourceBytes: number,
  logDir: string,
): ThreadFigures {
  const gb = sourceBytes / 1e9;
  const secs = (t: ThreadCpu | undefined) => (t ? t.ticks / CLK_TCK : 0);
  const perPid = new Map<number, number>();
  for (const t of threads) perPid.set(t.pid, (perPid.get(t.pid) ?? 0) + t.ticks);
  const nodePid = [...perPid].reduce((a, b) => (b[1] > a[1] ? b : a), [0, -1])[0];
  const busiest = threads.reduce<ThreadCpu | undefined>(
    (a, t) => (!a || t.ticks > a.ticks ? t : a),
    undefined,
  );
  const mainPerGB = secs(threads.find((t) => t.tid === nodePid)) / gb;
  const loops = new Map<number, number>();
  for (const p of plateThreads(logDir).values()) {
    if (p.tid !== undefined && p.tid !== nodePid)
      loops.set(p.tid, (loops.get(p.tid) ?? 0) + p.bytes);
  }
  const perLoop = [...loops].map(
    ([tid, bytes]) => secs(threads.find((t) => t.tid === tid)) / (bytes / 1e9),
  );
  const plateLoopPerGB = perLoop.length > 0 ? Math.max(...perLoop) : undefined;
  const totalPerGB = cpuSeconds / gb;
  const ceilingGBps = Object.fromEntries(
    PROJECTED_CORES.map((cores) => [
      `${cores} cores`,
      Math.min(
        cores / totalPerGB,
        1 / mainPerGB,
        plateLoopPerGB ? PROJECTED_LOOPS / plateLoopPerGB : Infinity,
      ),
    ]),
  );
  return {
    totalPerGB,
    busiestSeconds: secs(busiest),
    busiestPerGB: secs(busiest) / gb,
    mainPerGB,
    plateLoops: loops.size,
    ...(plateLoopPerGB !== undefined ? { plateLoopPerGB } : {}),
    ceilingGBps,
    top: [...threads]
      .sort((a, b) => b.ticks - a.ticks)
      .slice(0, TOP_THREADS)
      .map((t) => ({
        tid: t.tid,
        seconds: secs(t),
        role: t.tid === nodePid ? 'main' : loops.has(t.tid) ? 'plate loop' : 'other',
      })),
  };
}

export function threadTable(results: { name: string; threadCpu?: ThreadFigures }[]): string {
  const rows = results
    .filter((r) => r.threadCpu)
    .map((r) => {
      const t = r.threadCpu!;
      return `${r.name.padEnd(24)}  ${fmt(t.totalPerGB, 2).padStart(9)}  ${fmt(t.busiestSeconds, 1).padStart(10)}  ${fmt(t.busiestPerGB, 2).padStart(11)}  ${fmt(t.mainPerGB, 2).padStart(9)}  ${`${t.plateLoops}`.padStart(5)}  ${fmt(t.plateLoopPerGB, 2).padStart(10)}  ${PROJECTED_CORES.map((c) => fmt(t.ceilingGBps[`${c} cores`], 2).padStart(6)).join('  ')}`;
    });
  return [
    `${'variant'.padEnd(24)}  ${'CPU-s/GB'.padStart(9)}  ${'busiest s'.padStart(10)}  ${'busiest/GB'.padStart(11)}  ${'main/GB'.padStart(9)}  ${'loops'.padStart(5)}  ${'loop/GB'.padStart(10)}  ${PROJECTED_CORES.map((c) => `${c}c GB/s`.padStart(6)).join('  ')}`,
    ...rows,
    `(ceiling = min(cores / CPU-s per GB, 1 / main-thread CPU-s per GB, ${PROJECTED_LOOPS} loops / busiest plate loop's CPU-s per GB it moved))`,
  ].join('\n');
}
