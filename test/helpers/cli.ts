// Runs the built CLI as a user would: a child process with its own environment.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BATCH, PROJECT } from './fixtures.js';
import type { TestServer } from './servers.js';

export const BIN = fileURLToPath(new URL('../../../bin/imgbackup.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function serverEnv(server: TestServer): NodeJS.ProcessEnv {
  return {
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_REGION: server.region,
    AWS_ENDPOINT_URL: server.endpoint,
  };
}

/** The environment every spawned CLI starts from: nothing of the developer's own. */
export function cliBaseEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TZ: process.env.TZ,
    // keep tests independent of the developer's own AWS config
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    // a suite run with it tests the zlib fallback throughout (README "Tests")
    ...(process.env.IMGBACKUP_NO_ADDON
      ? { IMGBACKUP_NO_ADDON: process.env.IMGBACKUP_NO_ADDON }
      : {}),
  };
}

export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  opts: {
    input?: string;
    onSpawn?: (pid: number) => void;
    /** Each chunk of stderr as it arrives, with everything received so far. */
    onStderr?: (soFar: string) => void;
    /** 'closed': its reader goes away at once, as `| head -c 0` would; a fd: that file. */
    stdout?: 'closed' | number;
  } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...cliBaseEnv(), ...env },
      stdio: ['pipe', typeof opts.stdout === 'number' ? opts.stdout : 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    if (opts.stdout === 'closed') child.stdout?.destroy();
    else child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      opts.onStderr?.(stderr);
    });
    child.on('error', reject);
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    child.stdin?.end(opts.input ?? '');
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** The flags naming a run's plates and buckets, as every plate command takes them. */
export function plateArgs(o: { csv: string; live: string; cold: string }): string[] {
  return [
    '--plates',
    o.csv,
    '--project-name',
    PROJECT,
    '--batch-id',
    BATCH,
    '--bucket',
    o.live,
    '--cold-bucket',
    o.cold,
  ];
}
