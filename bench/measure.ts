// Runs one measured command: wall, CPU of its whole process tree, and (from the sampler thread)
// peak RSS of the tree and peak bytes under a directory.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { REPO } from './common.js';
import type { SamplerInput, SamplerResult, ThreadCpu } from './sampler.js';

export const SAMPLE_MS = 100;

export const CLK_TCK =
  Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/**
 * Runs `cmd args` under `sh`, which, once the command is done, copies its own /proc stat: its
 * cutime+cstime are the CPU seconds of every process of the tree that was waited for.
 */
const WRAP = '"$@"; rc=$?; cat /proc/$$/stat > "$BENCH_STAT_FILE"; exit $rc';

export interface Measured {
  exitCode: number;
  wallSeconds: number;
  cpuSeconds: number;
  /** CPU of this process (the s3rver, plus the sampler) while the command ran. */
  serverCpuSeconds: number;
  /** CPU the rest of the machine used meanwhile (other users' jobs skew the timings). */
  otherCpuSeconds: number;
  peakRssBytes: number;
  peakTmpdirBytes: number;
  peakProcesses: number;
  /** Every thread of the tree: its CPU when last read. */
  threads: ThreadCpu[];
  stdout: string;
  stderr: string;
}

/** The command running now, so an interrupt can stop its process group. */
export let current: { pid: number } | undefined;

/** Busy CPU seconds of the whole machine so far (/proc/stat; idle, iowait and steal excluded). */
function machineBusySeconds(): number {
  const first = readFileSync('/proc/stat', 'latin1').split('\n')[0] ?? '';
  const f = first.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: count the first three and irq/softirq
  return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0)) / CLK_TCK;
}

export async function measure(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  watchDir: string,
  logDir: string,
): Promise<Measured> {
  mkdirSync(logDir, { recursive: true });
  const stdout = join(logDir, 'stdout.txt');
  const stderr = join(logDir, 'stderr.txt');
  const statFile = join(logDir, 'proc-stat.txt');
  rmSync(statFile, { force: true });
  const outFd = openSync(stdout, 'w');
  const errFd = openSync(stderr, 'w');
  const cpu0 = process.cpuUsage();
  const busy0 = machineBusySeconds();
  const t0 = performance.now();
  const child = spawn('sh', ['-c', WRAP, 'sh', cmd, ...args], {
    cwd: REPO,
    env: { ...env, BENCH_STAT_FILE: statFile },
    stdio: ['ignore', outFd, errFd],
    detached: true, // its own process group, so an interrupt can stop the whole tree
  });
  closeSync(outFd);
  closeSync(errFd);
  const exited = new Promise<number>((res, rej) => {
    child.on('error', rej);
    child.on('exit', (code, sig) => res(code ?? (sig ? 128 : 1)));
  });
  current = { pid: child.pid! };
  const input: SamplerInput = { rootPid: child.pid!, dir: watchDir, intervalMs: SAMPLE_MS };
  const worker = new Worker(new URL('./sampler.js', import.meta.url), { workerData: input });
  const exitCode = await exited;
  const wallSeconds = (performance.now() - t0) / 1000;
  const busy = machineBusySeconds() - busy0;
  current = undefined;
  const peaks = await new Promise<SamplerResult>((res, rej) => {
    worker.once('message', (m: SamplerResult) => res(m));
    worker.once('error', rej);
    worker.postMessage('stop');
  });
  await worker.terminate();
  const cpu = process.cpuUsage(cpu0);
  let cpuSeconds = NaN;
  if (existsSync(statFile)) {
    const stat = readFileSync(statFile, 'latin1');
    const f = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    // fields 14-17 of proc(5) (utime, stime, cutime, cstime) are at 11-14 here
    cpuSeconds = ((f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0)) / CLK_TCK;
  }
  const serverCpuSeconds = (cpu.user + cpu.system) / 1e6;
  return {
    exitCode,
    wallSeconds,
    cpuSeconds,
    serverCpuSeconds,
    otherCpuSeconds: Math.max(
      0,
      busy - serverCpuSeconds - (Number.isNaN(cpuSeconds) ? 0 : cpuSeconds),
    ),
    peakRssBytes: peaks.peakRssBytes,
    peakTmpdirBytes: peaks.peakTmpdirBytes,
    peakProcesses: peaks.peakProcesses,
    threads: peaks.threads,
    stdout,
    stderr,
  };
}

export function tail(file: string, lines = 5): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
