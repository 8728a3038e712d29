// A "host" for the multi-machine tests: the built CLI in its own process group, in its own UTS
// namespace with a hostname the test chooses (`unshare --uts`), with its own tmpdir and
// environment, so nothing local (a pid lock, a tmpdir, os.hostname()) ties two workers together.
// Needs unshare(1) and the right to create a UTS namespace (root, or CAP_SYS_ADMIN); where that
// is missing, startHost throws: a multi-host test must never quietly run as one host.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, cliBaseEnv, type CliResult } from './cli.js';

/** Read by the lease code as a test-only offset of the host's wall clock; passed through only. */
export const CLOCK_OFFSET_ENV = 'IMGBACKUP_TEST_CLOCK_OFFSET_MS';

/** The commands that take --tmpdir; the host's own is added when the args name none. */
const TMPDIR_COMMANDS = ['archive', 'plan'];

/** hostname(1) inside the new namespace, then exec: the spawned pid ends up being the program. */
const SET_HOSTNAME = 'hostname "$0" && exec "$@"';

export interface HostOptions {
  /** The hostname the process sees (os.hostname(), uname -n). */
  hostname: string;
  /** The CLI's arguments, e.g. ['archive', '--plates', csv, ...]. */
  args: string[];
  /** Added to the CLI's base environment (cli.ts), e.g. serverEnv(server). */
  env?: NodeJS.ProcessEnv;
  /** IMGBACKUP_TEST_CLOCK_OFFSET_MS: how far this host's wall clock is off, ms. */
  clockOffsetMs?: number;
  /** Instead of the CLI, run this program (argv[0] on PATH or absolute): for testing the harness. */
  command?: string[];
}

export interface Host {
  readonly hostname: string;
  /** The process (after exec, the CLI itself) and, detached, the leader of its process group. */
  readonly pid: number;
  /** Its own directory, as --tmpdir and TMPDIR; removed by stop(). */
  readonly tmpdir: string;
  /** Resolves when it exits (never rejects: a failed spawn is code null and the error on stderr). */
  readonly exited: Promise<CliResult>;
  stdout(): string;
  stderr(): string;
  /** Resolves once stderr (or stdout) matches; rejects after timeoutMs or if it exits first. */
  waitFor(pattern: RegExp, opts?: { timeoutMs?: number; on?: 'stderr' | 'stdout' }): Promise<void>;
  /** A signal to the process alone. */
  kill(signal: NodeJS.Signals): void;
  /** A signal to its whole process group: it and every child it started. */
  killGroup(signal: NodeJS.Signals): void;
  /** SIGKILL to the group (a frozen one too), wait for the exit, remove the tmpdir. */
  stop(): Promise<CliResult>;
}

let checked: true | Error | undefined;

/** Whether `unshare` gives a child its own hostname: true, or an Error saying why not. */
export function probeUts(unshare = 'unshare'): true | Error {
  const probe = 'imgbackup-uts-probe';
  const r = spawnSync(unshare, ['--uts', 'sh', '-c', SET_HOSTNAME, probe, 'hostname'], {
    encoding: 'utf8',
  });
  const got = r.stdout?.trim();
  if (r.status === 0 && got === probe) return true;
  const why =
    r.error?.message ??
    `exit ${r.status}: ${(r.stderr ?? '').trim() || `printed ${JSON.stringify(got)}`}`;
  return new Error(
    `test/helpers/host.ts: \`${unshare} --uts\` cannot give a process its own hostname here ` +
      `(${why}); the multi-host tests need util-linux unshare and root or CAP_SYS_ADMIN`,
  );
}

/** Once per process: can this machine give a child its own hostname? Throws why not. */
export function assertUtsNamespaces(): void {
  checked ??= probeUts();
  if (checked !== true) throw checked;
}

const hosts = new Set<Host>();

/** stop() for every host not stopped yet: an after() hook, so no frozen worker outlives its test. */
export async function stopAllHosts(): Promise<void> {
  await Promise.all([...hosts].map((h) => h.stop()));
}

export function startHost(opts: HostOptions): Host {
  assertUtsNamespaces();
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/.test(opts.hostname))
    throw new Error(`startHost: ${JSON.stringify(opts.hostname)} is not a hostname`);
  const dir = mkdtempSync(join(tmpdir(), `imgbackup-host-${opts.hostname}-`));
  const args =
    !opts.command && TMPDIR_COMMANDS.includes(opts.args[0] ?? '') && !opts.args.includes('--tmpdir')
      ? [...opts.args, '--tmpdir', dir]
      : opts.args;
  const program = opts.command ?? [process.execPath, BIN];
  const child = spawn(
    'unshare',
    ['--uts', 'sh', '-c', SET_HOSTNAME, opts.hostname, ...program, ...args],
    {
      env: {
        ...cliBaseEnv(),
        TMPDIR: dir,
        ...(opts.clockOffsetMs !== undefined
          ? { [CLOCK_OFFSET_ENV]: String(opts.clockOffsetMs) }
          : {}),
        ...opts.env,
      },
      // its own process group, so killGroup reaches what it starts and nothing of the test's
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  if (child.pid === undefined) throw new Error(`startHost ${opts.hostname}: unshare did not start`);
  const pid = child.pid;
  let out = '';
  let err = '';
  let result: CliResult | undefined;
  const listeners = new Set<() => void>();
  const changed = () => listeners.forEach((l) => l());
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    changed();
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    changed();
  });
  const exited = new Promise<CliResult>((resolve) => {
    child.on('error', (e) => {
      err += `startHost: ${e.message}\n`;
    });
    child.on('close', (code, signal) => {
      result = { code, signal, stdout: out, stderr: err };
      changed();
      resolve(result);
    });
  });
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch (e) {
      // the group is gone once every member has exited: nothing left to signal
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  };
  const host: Host = {
    hostname: opts.hostname,
    pid,
    tmpdir: dir,
    exited,
    stdout: () => out,
    stderr: () => err,
    waitFor(pattern, { timeoutMs = 60_000, on = 'stderr' } = {}) {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (pattern.test(on === 'stderr' ? err : out)) done(resolve);
          else if (result)
            done(() =>
              reject(
                new Error(
                  `${opts.hostname} exited (${result!.code ?? result!.signal}) before ${on} matched ${pattern}; stderr: ${err}`,
                ),
              ),
            );
        };
        const timer = setTimeout(
          () =>
            done(() =>
              reject(
                new Error(
                  `${opts.hostname}: ${on} did not match ${pattern} in ${timeoutMs} ms; stderr: ${err}`,
                ),
              ),
            ),
          timeoutMs,
        );
        const done = (then: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          then();
        };
        listeners.add(check);
        check();
      });
    },
    kill(signal) {
      if (!result) process.kill(pid, signal);
    },
    killGroup: signalGroup,
    async stop() {
      // even after it exited: a child it left behind in the group
      signalGroup('SIGKILL');
      const r = await exited;
      rmSync(dir, { recursive: true, force: true });
      hosts.delete(host);
      return r;
    },
  };
  hosts.add(host);
  return host;
}
