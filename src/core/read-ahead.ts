export interface ReadAheadOptions {
  /** Items fetched ahead at most, to hide per-request latency. */
  maxCount: number;
  /** Bytes buffered ahead at most (plus the one item being consumed). */
  maxBytes: number;
}

/**
 * Yields items in order with their bodies, each read whole, keeping up to `maxCount` fetches in
 * flight ahead of the consumer within `maxBytes` (an item larger than that alone is fetched only
 * when nothing else is buffered). Callers keep items small (ranges of a larger object), so memory
 * stays bounded whatever the object sizes.
 */
export async function* readAhead<T extends { size: number }>(
  items: readonly T[],
  fetch: (item: T) => Promise<Buffer[]>,
  opts: ReadAheadOptions,
): AsyncGenerator<{ item: T; body: Buffer[] }> {
  const window: { item: T; body: Promise<Buffer[]> }[] = [];
  let next = 0;
  let buffered = 0;
  const fill = () => {
    while (next < items.length && window.length < opts.maxCount) {
      const item = items[next] as T;
      if (buffered > 0 && buffered + item.size > opts.maxBytes) return;
      buffered += item.size;
      const body = fetch(item);
      // Awaited in order below; this keeps an early failure from being reported as unhandled.
      body.catch(() => {});
      window.push({ item, body });
      next += 1;
    }
  };
  for (;;) {
    fill();
    const head = window.shift();
    if (!head) return;
    const body = await head.body;
    buffered -= head.item.size;
    fill();
    yield { item: head.item, body };
  }
}
