// The compression slots are the whole process's: plates on worker threads take them from one
// shared counter, and a worker that ends while holding some gives them back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import {
  COMPRESS_SLOTS,
  compressLimit,
  compressSlotsBuffer,
  newSlotCell,
  returnSlots,
} from '../../src/archive/compress-limit.js';

const MODULE = new URL('../../src/archive/compress-limit.js', import.meta.url).href;

/** A worker that takes `n` slots of the shared counter and never finishes with them. */
async function holder(n: number, cell: SharedArrayBuffer): Promise<Worker> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.module).then((m) => {
      m.shareCompressSlots(workerData.counter, workerData.cell);
      let started = 0;
      for (let i = 0; i < workerData.n; i++)
        m.compressLimit(() => { started += 1; if (started === workerData.n) parentPort.postMessage('holding'); return new Promise(() => {}); });
    });`;
  const w = new Worker(code, {
    eval: true,
    workerData: { module: MODULE, counter: compressSlotsBuffer(), cell, n },
  });
  await new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  return w;
}

/** Whether a block asked for now starts within `ms`. */
async function startsWithin(ms: number): Promise<{ started: boolean; done: Promise<void> }> {
  let started = false;
  const done = compressLimit(async () => {
    started = true;
  });
  await new Promise((r) => setTimeout(r, ms));
  return { started, done };
}

test('slots held by another thread count; a terminated worker gives its slots back', async () => {
  const cell = newSlotCell();
  const w = await holder(COMPRESS_SLOTS, cell);
  const waiting = await startsWithin(200);
  assert.equal(waiting.started, false, 'every slot is held by the worker: the main thread waits');
  await w.terminate();
  returnSlots(cell);
  await waiting.done; // resolves only once it got a slot
  const again = await startsWithin(50);
  assert.equal(again.started, true);
  await again.done;
});

test('a worker holding some slots leaves the rest to the others', async () => {
  const cell = newSlotCell();
  const w = await holder(COMPRESS_SLOTS - 1, cell);
  const one = await startsWithin(50);
  assert.equal(one.started, true, 'one slot is still free');
  await one.done;
  await w.terminate();
  returnSlots(cell);
});
