// Worker thread that samples, every `intervalMs`, the summed VmRSS of a process tree, the bytes
// under a directory and the CPU of every thread of the tree, and reports the peaks (and each
// thread's last CPU reading, so threads that ended early still count) when told to stop. It runs off the main thread so the
// in-process S3 server is not stalled by /proc scans.
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';

export interface SamplerInput {
  rootPid: number;
  dir: string;
  intervalMs: number;
}

export interface SamplerResult {
  peakRssBytes: number;
  peakTmpdirBytes: number;
  peakProcesses: number;
  samples: number;
  /** Every thread seen: its process, its id and its user+system clock ticks when last read. */
  threads: ThreadCpu[];
}

export interface ThreadCpu {
  pid: number;
  tid: number;
  ticks: number;
}

/** utime+stime (fields 14, 15 of proc(5)) of each thread of pid, in clock ticks. */
function threadTicks(pid: number): ThreadCpu[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: ThreadCpu[] = [];
  for (const name of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${name}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ pid, tid: Number(name), ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // ended meanwhile: its last reading stands
    }
  }
  return out;
}

/** ppid of every live process, from /proc/<pid>/stat (field 4, after the ")" of the name). */
function parentMap(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  return children;
}

export function treePids(rootPid: number): number[] {
  const children = parentMap();
  const out: number[] = [];
  const todo = [rootPid];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    out.push(pid);
    for (const c of children.get(pid) ?? []) todo.push(c);
  }
  return out;
}

function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Bytes of the regular files under dir (apparent size, like `du -sb` without directory blocks). */
export function dirBytes(dir: string): number {
  let total = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const p = join(dir, name);
    try {
      const st = lstatSync(p);
      if (st.isDirectory()) total += dirBytes(p);
      else if (st.isFile()) total += st.size;
    } catch {
      // removed meanwhile
    }
  }
  return total;
}

if (parentPort && workerData) {
  const input = workerData as SamplerInput;
  const port = parentPort;
  const result: SamplerResult = {
    peakRssBytes: 0,
    peakTmpdirBytes: 0,
    peakProcesses: 0,
    samples: 0,
    threads: [],
  };
  const threads = new Map<number, ThreadCpu>();
  const sample = () => {
    const pids = treePids(input.rootPid);
    for (const t of pids.flatMap(threadTicks)) threads.set(t.tid, t);
    const rss = pids.reduce((n, pid) => n + rssBytes(pid), 0);
    const tmp = dirBytes(input.dir);
    result.peakRssBytes = Math.max(result.peakRssBytes, rss);
    result.peakTmpdirBytes = Math.max(result.peakTmpdirBytes, tmp);
    result.peakProcesses = Math.max(result.peakProcesses, pids.length);
    result.samples += 1;
  };
  const timer = setInterval(sample, input.intervalMs);
  sample();
  port.on('message', (msg: unknown) => {
    if (msg !== 'stop') return;
    clearInterval(timer);
    sample();
    result.threads = [...threads.values()];
    port.postMessage(result);
    port.close();
  });
}
