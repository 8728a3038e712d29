/**
 * Small members restored to S3 are read whole (and checked) while the tar stream goes on, then
 * uploaded in the background, several at once: a plate of ~20,000 objects would otherwise wait
 * a HEAD and a PUT round trip per object, one after the other.
 */

/**
 * A member up to this size is buffered whole and uploaded in the background: every member that
 * goes up as one PUT (targets.ts), so a plate of ~15 MB images (300 GB in ~20,000) does not wait
 * a HEAD and a PUT per image, one image after the other.
 */
export const BACKGROUND_MEMBER_MAX = 16 * 1024 * 1024;
/** Uploads in flight per tarball: enough to hide S3's per-request latency (~20-50 ms). */
export const BACKGROUND_PUTS = 16;
/**
 * Bytes those uploads may hold at once: the memory this costs per tarball being restored. Two
 * of the largest members, or many small ones, while the loop reads the next.
 */
export const BACKGROUND_BYTES = 32 * 1024 * 1024;

/**
 * Runs tasks of known size in the background within a count and byte budget. The first failure
 * is kept: later `add`s and `drain` throw it, so the tarball stops early and says why.
 */
export class BackgroundPuts {
  private readonly running = new Set<Promise<void>>();
  private bytes = 0;
  private failed: { err: unknown } | undefined;

  constructor(
    private readonly maxTasks = BACKGROUND_PUTS,
    private readonly maxBytes = BACKGROUND_BYTES,
  ) {}

  /** Waits for room (one task always fits), then starts `task`. */
  async add(size: number, task: () => Promise<void>): Promise<void> {
    while (
      this.running.size > 0 &&
      (this.running.size >= this.maxTasks || this.bytes + size > this.maxBytes)
    ) {
      await Promise.race(this.running);
    }
    this.throwIfFailed();
    this.bytes += size;
    const run: Promise<void> = task()
      .catch((err: unknown) => {
        this.failed ??= { err };
      })
      .finally(() => {
        this.bytes -= size;
        this.running.delete(run);
      });
    this.running.add(run);
  }

  /** Every task done; throws the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    this.throwIfFailed();
  }

  /** Every task done, failed or not (before cleaning up after a failure). */
  async settle(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running);
  }

  private throwIfFailed(): void {
    if (this.failed) throw this.failed.err;
  }
}
