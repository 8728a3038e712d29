// Ranged GETs seen through a proxy: which ranges a reader asked for, and how many at once.
import { startFaultProxy } from './fault-proxy.js';

/** The Range headers of an object read in `piece`-byte ranges, in order. */
export function rangesOf(size: number, piece: number): string[] {
  const out: string[] = [];
  for (let start = 0; start < size; start += piece)
    out.push(`bytes=${start}-${Math.min(size, start + piece) - 1}`);
  return out;
}

/**
 * A proxy that records the Range of every GET of `key` and holds the first to arrive until
 * `others` more of the same key have been asked for (or 20 s pass); `whileHeld()` says how many
 * came. A reader with N GETs of the object in flight lets at most 2N − 2 more arrive (N − 1
 * beside the held one, N − 1 more as it consumes those started before it), one GET at a time none.
 * `ranges()`: every Range asked for, in byte order (GETs in flight race to the proxy).
 */
export async function heldFirstRange(endpoint: string, key: string, others: number) {
  const ranges: string[] = [];
  let release: () => void = () => {};
  const held = new Promise<void>((r) => (release = r));
  const timeout = setTimeout(() => release(), 20_000);
  let holding = false;
  let whileHeld = 0;
  const proxy = await startFaultProxy(endpoint, {
    rate: 0,
    onRequest: (req) => {
      const path = decodeURIComponent((req.url ?? '').split('?')[0]!);
      if (req.method !== 'GET' || !path.endsWith(`/${key}`)) return;
      ranges.push(req.headers.range ?? 'none');
      if (ranges.length === 1) {
        holding = true;
        return held.then(() => {
          holding = false;
        });
      }
      if (holding && ++whileHeld === others) release();
    },
  });
  const start = (r: string) => Number(/^bytes=(\d+)-/.exec(r)?.[1] ?? -1);
  return {
    proxy,
    ranges: () => [...ranges].sort((a, b) => start(a) - start(b)),
    whileHeld: () => whileHeld,
    close: async () => {
      clearTimeout(timeout);
      release();
      await proxy.close();
    },
  };
}
