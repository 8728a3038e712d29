import { availableParallelism } from 'node:os';

/**
 * Blocks compressed at once by the whole process, whatever the number of plates and tarballs:
 * one per core plus one queued, so no core waits on the main thread for its next block. The
 * rest of libuv's pool (sized in bin/imgbackup.js) stays free for file reads and writes, which
 * would otherwise queue behind every block of every plate in flight.
 */
export const COMPRESS_SLOTS = availableParallelism() + 1;

/**
 * libuv threads the CLI asks for (libuv's default is 4): the compression slots, two for file
 * I/O, and one per four cores for the md5s of the sources and tarballs, which run there too
 * (integrity/etag.ts) at ~1.3 CPU-s per GB hashed: a quarter of the cores hashes as fast as the
 * rest compress.
 */
export const THREADPOOL_SIZE = Math.max(
  4,
  COMPRESS_SLOTS + 2 + Math.ceil(availableParallelism() / 4),
);

/**
 * Slots in use, counted in memory every thread of the process shares: plates run on worker
 * threads of their own (core/workers), and libuv's pool, which the slots ration, is the whole
 * process's. The main thread makes the counter; each worker is handed it (shareCompressSlots).
 */
let used = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));

/** The counter, to hand to a worker thread. */
export function compressSlotsBuffer(): SharedArrayBuffer {
  return used.buffer as SharedArrayBuffer;
}

/** The slots this thread holds, where the thread that started it can read them. */
let held = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));

/** A cell for a worker's own count of slots, to hand to it with the counter. */
export function newSlotCell(): SharedArrayBuffer {
  return new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
}

/**
 * In a worker thread: count against the process's counter, not this thread's own, and keep
 * the slots it holds in `mine`.
 */
export function shareCompressSlots(counter: SharedArrayBuffer, mine: SharedArrayBuffer): void {
  used = new Int32Array(counter);
  held = new Int32Array(mine);
}

/**
 * Gives back what a worker that has ended still held: a worker terminated after its plate
 * failed never runs the releases of the blocks it had in flight.
 */
export function returnSlots(mine: SharedArrayBuffer): void {
  const n = Atomics.exchange(new Int32Array(mine), 0, 0);
  if (n <= 0) return;
  Atomics.sub(used, 0, n);
  Atomics.notify(used, 0, n);
}

/** Atomics.waitAsync (Node >= 16; TypeScript types it from lib es2024 only). */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      a: Int32Array,
      index: number,
      value: number,
    ): { async: false; value: string } | { async: true; value: Promise<string> };
  }
).waitAsync;

/** This thread's callers take slots one at a time, first come first served, as p-limit did. */
let turn: Promise<void> = Promise.resolve();

async function takeSlot(): Promise<void> {
  for (;;) {
    const n = Atomics.load(used, 0);
    if (n < COMPRESS_SLOTS) {
      if (Atomics.compareExchange(used, 0, n, n + 1) === n) {
        Atomics.add(held, 0, 1);
        return;
      }
      continue;
    }
    // Sleeps (off this loop's CPU) until a release anywhere changes the count; the timer keeps
    // the loop alive meanwhile, which a pending waitAsync alone does not promise.
    const wait = waitAsync(used, 0, n);
    if (!wait.async) continue;
    const alive = setInterval(() => {}, 60_000);
    await wait.value;
    clearInterval(alive);
  }
}

function giveSlot(): void {
  Atomics.sub(held, 0, 1);
  Atomics.sub(used, 0, 1);
  Atomics.notify(used, 0, 1);
}

/** Runs one block's compression when a slot of the process is free. */
export async function compressLimit<T>(fn: () => Promise<T>): Promise<T> {
  const mine = turn.then(takeSlot);
  turn = mine;
  await mine;
  try {
    return await fn();
  } finally {
    giveSlot();
  }
}
