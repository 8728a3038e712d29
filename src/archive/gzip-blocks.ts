import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { gzipEngine, type GzipEngine } from './gzip-engine.js';

/**
 * Input is cut into blocks of this size, each compressed on its own. Deflate looks back only
 * 32 KiB, so 1 MiB blocks cost almost nothing in ratio and give every core work.
 */
export const GZIP_BLOCK_SIZE = 1024 * 1024;

/**
 * gzip that uses every core: each block becomes its own gzip member, compressed on libuv's
 * thread pool, and members are written in input order. Concatenated gzip members are one valid
 * gzip stream (RFC 1952 §2.2); GNU tar, gzip and zlib read them as one. Memory is bounded:
 * at most `inFlight` blocks and their outputs are held.
 */
export class GzipBlocks extends Transform {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly queue: Promise<Buffer>[] = [];
  private blocks = 0;

  constructor(
    private readonly level: number,
    private readonly engine: GzipEngine = gzipEngine(),
    private readonly blockSize = GZIP_BLOCK_SIZE,
    private readonly inFlight = availableParallelism() + 1,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes >= this.blockSize) this.cut(this.blockSize);
    this.drain(this.inFlight - 1).then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    // Empty input still makes one (empty) member: zero bytes are not a gzip file.
    if (this.pendingBytes > 0 || this.blocks === 0) this.cut(this.pendingBytes);
    this.drain(0).then(() => done(), done);
  }

  private cut(n: number): void {
    const all =
      this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    const block = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    this.blocks += 1;
    const p = this.engine.gzip(block, this.level);
    p.catch(() => {}); // awaited in order by drain
    this.queue.push(p);
  }

  /** Emits finished blocks in order until at most `keep` are still compressing. */
  private async drain(keep: number): Promise<void> {
    while (this.queue.length > keep) {
      const out = await this.queue.shift()!;
      this.push(out);
    }
  }
}
