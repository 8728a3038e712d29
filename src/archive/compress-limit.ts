import { availableParallelism } from 'node:os';
import pLimit from 'p-limit';

/**
 * Blocks compressed at once by the whole process, whatever the number of plates and tarballs:
 * one per core plus one queued, so no core waits on the main thread for its next block. The
 * rest of libuv's pool (sized in bin/imgbackup.js) stays free for file reads and writes, which
 * would otherwise queue behind every block of every plate in flight.
 */
export const COMPRESS_SLOTS = availableParallelism() + 1;

/** libuv threads the CLI asks for: the compression slots plus two for file I/O (libuv's default is 4). */
export const THREADPOOL_SIZE = Math.max(4, COMPRESS_SLOTS + 2);

/** Runs one block's compression when a slot is free. */
export const compressLimit = pLimit(COMPRESS_SLOTS);
