import type { LayoutOptions } from '../../layout/layout.js';
import type { PlateRow } from '../../plates/plates-csv.js';
import type { S3Store } from '../../s3/store.js';
import { poolOptions, runPlates, type PlateResult, type RunOptions } from '../pool.js';
import { checkBuckets } from '../preflight.js';
import { coldObjects, type What } from './cold-objects.js';
import { describeState, isReadable } from './state.js';

export interface RestoreStatusOptions extends RunOptions {
  layout: LayoutOptions;
  what: What;
  /** Poll until every plate is readable, or fail the plates still waiting at the timeout. */
  wait?: { timeoutMs: number; pollMs: number };
  /** With wait: after each poll that leaves plates waiting, how many and the next poll's delay. */
  onPoll?: (waiting: PlateResult[], nextMs: number) => void;
}

/** The first poll comes soon (restores of small objects can finish in minutes), then slower. */
export const FIRST_POLL_MS = 15_000;

/** Waits between polls: FIRST_POLL_MS (or less), doubling up to pollMs. */
export function pollDelays(pollMs: number): () => number {
  let next = Math.min(FIRST_POLL_MS, pollMs);
  return () => {
    const d = next;
    next = Math.min(next * 2, pollMs);
    return d;
  };
}

async function statusPlate(
  store: S3Store,
  opts: RestoreStatusOptions,
  plate: PlateRow,
): Promise<Omit<PlateResult, 'seconds'>> {
  const p = await coldObjects(store, opts.layout, plate, opts.what);
  const objects = p.objects.map((o) => ({
    key: o.key,
    storageClass: o.head.storageClass ?? 'STANDARD',
    size: o.head.size,
    state: o.state.state,
    text: describeState(o.state),
    ...(o.state.state === 'ready' && o.state.expiry
      ? { expiry: o.state.expiry.toISOString() }
      : {}),
  }));
  const waiting = p.objects.filter((o) => !isReadable(o.state));
  const notRequested = waiting.filter((o) => o.state.state === 'not requested');
  const tarballs = p.objects.filter((o) => o.role === 'tarball');
  const status =
    waiting.length === 0 ? 'readable' : notRequested.length > 0 ? 'not restored' : 'restoring';
  return {
    plateId: plate.plateId,
    tag: p.L.tag,
    status,
    message:
      tarballs.map((o) => `${o.tarball.fileName}: ${describeState(o.state)}`).join('; ') +
      (notRequested.length > 0 ? '; run imgbackup restore-request' : ''),
    files: p.objects.length,
    bytesIn: tarballs.reduce((n, o) => n + o.head.size, 0),
    bytesOut: 0,
    details: { objects },
  };
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * Per plate and tarball: readable now / restore in progress / ready until <expiry> / not
 * requested. With `wait`, polls the plates not yet readable until all are, or the timeout
 * fails those still waiting.
 */
export async function restoreStatus(
  store: S3Store,
  opts: RestoreStatusOptions,
): Promise<PlateResult[]> {
  await checkBuckets(store, [opts.layout.coldBucket]);
  const once = (plates: PlateRow[], onDone?: RunOptions['onDone']) =>
    runPlates(
      plates,
      (plate, signal) => statusPlate(store.withSignal(signal), opts, plate),
      lookPool(opts, plates, onDone),
    );
  return pollPlates(opts, once);
}

/**
 * The pool of one look at `plates`: onDone is the caller's for the last look only, so --wait
 * shows each plate once (its final answer), not once per poll.
 */
export function lookPool(
  opts: RunOptions & { layout: LayoutOptions },
  plates: PlateRow[],
  onDone: RunOptions['onDone'],
) {
  const pool = poolOptions({ ...opts, plates }, 'restore-status');
  delete pool.onDone;
  return onDone ? { ...pool, onDone } : pool;
}

const isWaiting = (r: PlateResult) => r.status === 'restoring' || r.status === 'not restored';

/**
 * Without `wait`, one look. With it, looks again at the plates still restoring or not restored
 * until none are, or fails those still waiting at the timeout (restore-status, with or without
 * --sources).
 */
export async function pollPlates(
  opts: Pick<RestoreStatusOptions, 'plates' | 'wait' | 'signal' | 'onPoll' | 'onDone'>,
  once: (plates: PlateRow[], onDone?: RunOptions['onDone']) => Promise<PlateResult[]>,
): Promise<PlateResult[]> {
  if (!opts.wait) return once(opts.plates, opts.onDone);
  const deadline = Date.now() + opts.wait.timeoutMs;
  const delay = pollDelays(opts.wait.pollMs);
  const final = new Map<string, PlateResult>();
  let pending = opts.plates;
  for (;;) {
    const results = await once(pending);
    for (const r of results) final.set(r.plateId, r);
    pending = pending.filter((_, i) => isWaiting(results[i]!));
    if (pending.length === 0 || opts.signal.aborted) break;
    const left = deadline - Date.now();
    if (left <= 0) break;
    const wait = Math.min(delay(), left);
    opts.onPoll?.(results.filter(isWaiting), wait);
    await sleep(wait, opts.signal);
  }
  const out = opts.plates.map((p) => {
    const r = final.get(p.plateId)!;
    if (!pending.includes(p)) return r;
    return {
      ...r,
      status: 'failed' as const,
      message: `not readable within --timeout: ${r.message ?? r.status}`,
    };
  });
  for (const r of out) opts.onDone?.(r);
  return out;
}
