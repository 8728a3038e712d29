import { statfs } from 'node:fs/promises';

export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/**
 * Space in the tmpdir shared by the plates of one run. A plate reserves an upper bound of its
 * tarballs before it writes a byte and waits while plates in flight hold the rest, so plates
 * never overfill the disk between them. First come, first served.
 */
export class DiskBudget {
  private reserved = 0;
  private readonly waiting: { need: number; go: () => void }[] = [];

  constructor(readonly capacity: number) {}

  /** Resolves with a release function once `need` bytes are free for this caller. */
  async reserve(need: number, signal: AbortSignal, onWait?: () => void): Promise<() => void> {
    if (this.waiting.length === 0 && this.reserved + need <= this.capacity) {
      this.reserved += need;
    } else {
      onWait?.();
      // wake() reserves for us before it lets us go, so no later caller can take the space.
      await new Promise<void>((resolve, reject) => {
        const entry = { need, go: resolve };
        this.waiting.push(entry);
        signal.addEventListener(
          'abort',
          () => {
            const i = this.waiting.indexOf(entry);
            if (i >= 0) this.waiting.splice(i, 1);
            reject(signal.reason);
          },
          { once: true },
        );
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= need;
      this.wake();
    };
  }

  private wake(): void {
    for (;;) {
      const head = this.waiting[0];
      if (!head || this.reserved + head.need > this.capacity) return;
      this.waiting.shift();
      this.reserved += head.need;
      head.go();
    }
  }
}
