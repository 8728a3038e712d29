import { open, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { PlateError } from '../errors.js';
import type { PlateLayout, TarballLayout } from '../layout/layout.js';
import type { Logger } from '../log/log.js';
import { httpStatus, s3ErrorCode, type S3Store } from '../s3/store.js';
import type { PlateOwner } from './archive-state.js';

export interface PlateLock {
  /** Whether a stale lock (its holder gone) was removed to take this one. */
  tookOver: boolean;
  release(): Promise<void>;
}

/** What identifies a lock's holder: a pid alone can be reused by an unrelated process. */
export interface LockHolder {
  pid: number;
  /** /proc/PID/stat field 22 (clock ticks since boot); absent in locks of older versions. */
  start?: string;
  host?: string;
}

/**
 * A process as /proc shows it: its state (field 3) and start time (field 22), or undefined if
 * there is no such process. Field 2 (the command) may hold spaces and parentheses, so fields are
 * counted from its closing parenthesis. Without /proc, only kill(pid, 0) can tell.
 */
export function procStat(pid: number): { state: string; start?: string } | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    try {
      readFileSync('/proc/self/stat');
    } catch {
      return killAlive(pid) ? { state: '?' } : undefined; // no /proc on this system
    }
    return undefined;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '?', ...(fields[19] ? { start: fields[19] } : {}) };
}

function killAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function ourHolder(): LockHolder {
  const start = procStat(process.pid)?.start;
  return { pid: process.pid, ...(start ? { start } : {}), host: hostname() };
}

/** A lock file's holder: JSON, or a bare pid as older versions wrote it. */
export function parseLock(text: string): LockHolder | undefined {
  try {
    const j = JSON.parse(text) as Partial<LockHolder>;
    if (typeof j === 'number') return j > 0 ? { pid: j } : undefined;
    if (typeof j?.pid !== 'number' || j.pid <= 0) return undefined;
    return {
      pid: j.pid,
      ...(typeof j.start === 'string' ? { start: j.start } : {}),
      ...(typeof j.host === 'string' ? { host: j.host } : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * Whether a lock's holder may still be running an archive: not if it is gone, a zombie (killed,
 * not reaped: kill(pid, 0) still succeeds on it), or another process under a reused pid (its
 * start time differs). A holder on another host cannot be checked from here: it counts as alive.
 * Our own pid with our start time is another plate of this run (two plates with one tag).
 */
export function holderAlive(h: LockHolder): boolean {
  if (h.host !== undefined && h.host !== hostname()) return true;
  const now = procStat(h.pid);
  if (!now || now.state === 'Z' || now.state === 'X') return false;
  return h.start === undefined || now.start === undefined || now.start === h.start;
}

/** A lock file younger than this whose text is not a holder is being written: not stale. */
const LOCK_WRITE_GRACE_MS = 5_000;
/** Tries at taking a lock; another run's takeover of a stale lock lasts milliseconds. */
const LOCK_ATTEMPTS = 50;
const LOCK_RETRY_MS = 20;

const ageMs = async (path: string) =>
  Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? 0);

/**
 * One archive of a plate at a time on this machine: a lock file in the tmpdir naming its holder
 * (pid, start time, host). A lock whose holder is gone (kill -9, crash) is stale, and so is
 * everything it left there.
 */
export async function lockPlate(tmpdir: string, L: PlateLayout, log: Logger): Promise<PlateLock> {
  const path = join(tmpdir, `${L.tag}.lock`);
  let tookOver = false;
  for (let attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
    if (await createLock(path)) return { tookOver, release: () => rm(path, { force: true }) };
    const text = (await readFile(path, 'utf8').catch(() => '')).trim();
    const holder = parseLock(text);
    if (holder ? holderAlive(holder) : (await ageMs(path)) < LOCK_WRITE_GRACE_MS) {
      const who = holder
        ? `process ${holder.pid}${holder.host ? ` on ${holder.host}` : ' on this machine'}`
        : 'another run starting now';
      throw new PlateError(
        `being archived by ${who} (${path}); wait for it, or remove that lock if no imgbackup is running there`,
      );
    }
    if (await removeStale(path, text, log, () => (tookOver = true))) continue;
    await new Promise((r) => setTimeout(r, LOCK_RETRY_MS)); // another run is taking it over
  }
  throw new PlateError(`cannot take the lock ${path}; remove it if no imgbackup is running`);
}

/** Creates the lock file naming us; false if one exists. A lock we could not write is removed. */
async function createLock(path: string): Promise<boolean> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    await fh.writeFile(`${JSON.stringify(ourHolder())}\n`);
    await fh.close();
    return true;
  } catch (err) {
    // A full disk, say: an empty lock would hold the plate off for the grace period.
    await fh.close().catch(() => {});
    await rm(path, { force: true });
    throw err;
  }
}

/**
 * Removes the lock at `path` if it still holds `text` (judged stale), under a takeover lock, so
 * two runs that both found it stale cannot remove each other's fresh lock. False if another run
 * is taking it over now. A takeover lock left by a run killed during those milliseconds is stale
 * once older than the grace period.
 */
export async function removeStale(
  path: string,
  text: string,
  log: Logger,
  /** Called only if this call removed the lock (not another run, not a takeover lock). */
  onRemoved: () => void = () => {},
): Promise<boolean> {
  const takeover = `${path.slice(0, -'.lock'.length)}.takeover.lock`;
  try {
    await (await open(takeover, 'wx')).close();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if ((await ageMs(takeover)) < LOCK_WRITE_GRACE_MS) return false;
    await rm(takeover, { force: true });
    return true;
  }
  try {
    const now = (await readFile(path, 'utf8').catch(() => undefined))?.trim();
    if (now === text) {
      log.warn(
        { path, holder: parseLock(text) ?? text },
        'removing a stale lock left by an interrupted run',
      );
      await rm(path, { force: true });
      onRemoved();
    }
    return true; // gone, or replaced: look again
  } finally {
    await rm(takeover, { force: true });
  }
}

/** Tarballs left in the tmpdir by an interrupted run of this plate (we hold its lock). */
export async function removeStaleLocal(tmpdir: string, L: PlateLayout): Promise<void> {
  await Promise.all(L.tarballs.map((t) => rm(join(tmpdir, t.fileName), { force: true })));
}

/** Both forms of a tarball's key: a run with the other --no-compress setting wrote the other. */
export function tarballKeyForms(t: TarballLayout): string[] {
  const base = t.md5Key.slice(0, -'.md5'.length); // SPEC: X.tar.gz and X.tar both have X.md5
  return [`${base}.tar.gz`, `${base}.tar`];
}

/** Run logs that were already told that ListMultipartUploads fails: said once per run. */
const toldCannotList = new WeakSet<Logger>();

/**
 * Multipart uploads of the plate's tarball keys (both forms) left by an interrupted run: billed
 * until aborted. Where they cannot be listed, the run's log says so once, with the fix.
 */
export async function abortStaleUploads(
  store: S3Store,
  L: PlateLayout,
  log: Logger,
  runLog: Logger = log,
): Promise<void> {
  for (const key of L.tarballs.flatMap(tarballKeyForms)) {
    let ids: string[];
    try {
      ids = await store.listUploads(L.coldBucket, key);
    } catch (err) {
      if (!toldCannotList.has(runLog)) {
        toldCannotList.add(runLog);
        runLog.warn({ bucket: L.coldBucket, code: s3ErrorCode(err) }, cannotListMessage(err));
      }
      return;
    }
    for (const id of ids) {
      log.warn({ key, uploadId: id }, 'aborting a multipart upload left by an interrupted run');
      await store.abortMultipart(L.coldBucket, key, id);
    }
  }
}

function cannotListMessage(err: unknown): string {
  const fix =
    'so multipart uploads left by interrupted runs are not aborted (their parts are billed until they are): ';
  if (s3ErrorCode(err) === 'AccessDenied' || httpStatus(err) === 403) {
    return `ListMultipartUploads is denied on the cold bucket, ${fix}grant s3:ListBucketMultipartUploads (and s3:AbortMultipartUpload), or add an AbortIncompleteMultipartUpload lifecycle rule (README, archive)`;
  }
  return `ListMultipartUploads failed on the cold bucket (${s3ErrorCode(err)}), ${fix}add an AbortIncompleteMultipartUpload lifecycle rule (README, archive), or abort them by hand`;
}

/** Names its plate (the tag is not unique), so another plate's run never takes it for its own. */
export function inProgressRecord(owner: PlateOwner): string {
  return `${JSON.stringify({ ...owner, host: hostname(), pid: process.pid, started: new Date().toISOString() })}\n`;
}
