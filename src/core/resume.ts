import { open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { PlateError } from '../errors.js';
import type { PlateLayout } from '../layout/layout.js';
import type { Logger } from '../log/log.js';
import type { S3Store } from '../s3/store.js';
import type { PlateOwner } from './archive-state.js';

export interface PlateLock {
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One archive of a plate at a time on this machine: a lock file in the tmpdir holding our pid.
 * A lock whose process is gone (kill -9, crash) is stale, and so is everything it left there.
 */
export async function lockPlate(tmpdir: string, L: PlateLayout, log: Logger): Promise<PlateLock> {
  const path = join(tmpdir, `${L.tag}.lock`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return { release: () => rm(path, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (pid && pid !== process.pid && alive(pid)) {
        throw new PlateError(
          `being archived by process ${pid} on this machine (${path}); wait for it`,
        );
      }
      log.warn({ path, pid }, 'removing a stale lock left by an interrupted run');
      await rm(path, { force: true });
    }
  }
  throw new PlateError(`cannot take the lock ${path}; remove it if no imgbackup is running`);
}

/** Tarballs left in the tmpdir by an interrupted run of this plate (we hold its lock). */
export async function removeStaleLocal(tmpdir: string, L: PlateLayout): Promise<void> {
  await Promise.all(L.tarballs.map((t) => rm(join(tmpdir, t.fileName), { force: true })));
}

/** Multipart uploads of our tarball keys left by an interrupted run: billed until aborted. */
export async function abortStaleUploads(
  store: S3Store,
  L: PlateLayout,
  log: Logger,
): Promise<void> {
  for (const t of L.tarballs) {
    let ids: string[];
    try {
      ids = await store.listUploads(L.coldBucket, t.key);
    } catch {
      return; // a store without ListMultipartUploads (s3rver) has nothing we could abort
    }
    for (const id of ids) {
      log.warn(
        { key: t.key, uploadId: id },
        'aborting a multipart upload left by an interrupted run',
      );
      await store.abortMultipart(L.coldBucket, t.key, id);
    }
  }
}

/** Names its plate (the tag is not unique), so another plate's run never takes it for its own. */
export function inProgressRecord(owner: PlateOwner): string {
  return `${JSON.stringify({ ...owner, host: hostname(), pid: process.pid, started: new Date().toISOString() })}\n`;
}
