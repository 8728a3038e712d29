export interface ReadAheadOptions {
  /** Objects fetched ahead at most, to hide per-request latency. */
  maxCount: number;
  /** Bytes buffered ahead at most (plus the one object being consumed). */
  maxBytes: number;
  /** Objects larger than this are never buffered; they are streamed when their turn comes. */
  bufferLimit: number;
}

/** A whole object as the chunks it was read in, or a stream of one. */
export type Body = Buffer[] | AsyncIterable<Buffer>;

/**
 * Yields items in order with their bodies, keeping up to `maxCount` GETs in flight ahead of the
 * consumer. Small objects are read whole into memory ahead of time (bounded by `maxBytes`); large
 * ones are streamed when reached, so memory stays bounded whatever the object sizes.
 */
export async function* readAhead<T extends { size: number }>(
  items: readonly T[],
  fetchWhole: (item: T) => Promise<Buffer[]>,
  stream: (item: T) => AsyncIterable<Buffer>,
  opts: ReadAheadOptions,
): AsyncGenerator<{ item: T; body: Body }> {
  const window: { item: T; whole?: Promise<Buffer[]> }[] = [];
  let next = 0;
  let buffered = 0;
  const fill = () => {
    while (next < items.length && window.length < opts.maxCount) {
      const item = items[next] as T;
      if (item.size > opts.bufferLimit) {
        window.push({ item });
      } else {
        if (buffered > 0 && buffered + item.size > opts.maxBytes) return;
        buffered += item.size;
        const whole = fetchWhole(item);
        // Awaited in order below; this keeps an early failure from being reported as unhandled.
        whole.catch(() => {});
        window.push({ item, whole });
      }
      next += 1;
    }
  };
  for (;;) {
    fill();
    const head = window.shift();
    if (!head) return;
    if (head.whole) {
      const body = await head.whole;
      buffered -= head.item.size;
      fill();
      yield { item: head.item, body };
    } else {
      yield { item: head.item, body: stream(head.item) };
    }
  }
}
