import { Transform, type TransformCallback } from 'node:stream';
import { COMPRESS_SLOTS, compressLimit } from './compress-limit.js';
import { gzipEngine, type GzipEngine } from './gzip-engine.js';

/**
 * Input is cut into blocks of this size, each compressed on its own. Deflate looks back only
 * 32 KiB, so 1 MiB blocks cost almost nothing in ratio and give every core work.
 */
export const GZIP_BLOCK_SIZE = 1024 * 1024;

/**
 * gzip that uses every core: each block becomes its own gzip member, compressed on libuv's
 * thread pool (at most COMPRESS_SLOTS blocks at once in the whole process), and members are
 * written in input order. Concatenated gzip members are one valid gzip stream (RFC 1952 §2.2);
 * GNU tar, gzip and zlib read them as one. Memory is bounded: at most `inFlight` blocks (reused
 * from one to the next) and their outputs are held.
 */
export class GzipBlocks extends Transform {
  /** The block being filled, and how much of it is. */
  private block: Buffer | undefined;
  private fill = 0;
  /** Blocks whose compression finished: reused, so each block costs no new allocation. */
  private readonly free: Buffer[] = [];
  private readonly queue: { input: Buffer; length: number; out: Promise<Buffer> }[] = [];
  private blocks = 0;

  constructor(
    private readonly level: number,
    private readonly engine: GzipEngine = gzipEngine(undefined, level),
    private readonly blockSize = GZIP_BLOCK_SIZE,
    private readonly inFlight = COMPRESS_SLOTS,
    /** Called for each member as it is emitted: its compressed and uncompressed length. */
    private readonly onMember?: (compressed: number, uncompressed: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let offset = 0;
    while (offset < chunk.length) {
      this.block ??= this.free.pop() ?? Buffer.allocUnsafe(this.blockSize);
      const n = chunk.copy(this.block, this.fill, offset);
      this.fill += n;
      offset += n;
      if (this.fill === this.blockSize) this.cut();
    }
    this.drain(this.inFlight - 1).then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    // Empty input still makes one (empty) member: zero bytes are not a gzip file.
    if (this.fill > 0 || this.blocks === 0) this.cut();
    this.drain(0).then(() => done(), done);
  }

  private cut(): void {
    const input = this.block ?? Buffer.alloc(0);
    const block = input.subarray(0, this.fill);
    const out = compressLimit(() => this.engine.gzip(block, this.level));
    out.catch(() => {}); // awaited in order by drain
    this.queue.push({ input, length: block.length, out });
    this.block = undefined;
    this.fill = 0;
    this.blocks += 1;
  }

  /** Emits finished blocks in order until at most `keep` are still compressing. */
  private async drain(keep: number): Promise<void> {
    while (this.queue.length > keep) {
      const { input, length, out } = this.queue.shift()!;
      const member = await out;
      this.onMember?.(member.length, length);
      this.push(member);
      if (input.length === this.blockSize) this.free.push(input);
    }
  }
}
