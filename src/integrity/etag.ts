import { createHash, type Hash } from 'node:crypto';
import { native } from '../native/addon.js';

/** The aws CLI's default chunk size; the old script's ETags were made with it, so we start there. */
export const BASE_PART_SIZE = 8 * 1024 * 1024;
/** S3 refuses a multipart upload with more parts than this. */
export const MAX_PARTS = 10_000;
/** S3 refuses a part larger than this. */
export const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;
/** S3 refuses a part (other than the last) smaller than this. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;

/** The aws CLI rule: 8 MiB, doubled until the object needs at most 10,000 parts. */
export function partSizeFor(size: number): number {
  let part = BASE_PART_SIZE;
  while (Math.ceil(size / part) > MAX_PARTS) part *= 2;
  if (part > MAX_PART_SIZE) throw new Error(`${size} bytes is larger than S3 can store`);
  return part;
}

export interface EtagResult {
  /** md5 hex of all bytes. */
  md5: string;
  /** What S3 answers for the object uploaded with these parts: plain md5 for a single PUT. */
  etag: string;
  /** md5 of each part, in order (one entry for a single PUT). */
  partMd5s: Buffer[];
  size: number;
}

/** Who hashes: the addon's paired md5 (both sums in one pass), or Node's crypto (twice). */
export type Md5Impl = 'native' | 'node';

/**
 * The paired md5 works on whole 64-byte blocks, so parts must be a multiple of 64 (all real
 * part sizes are: 8 MiB doubled); other part sizes (tests) hash with Node's crypto.
 */
export function defaultMd5Impl(partSize: number): Md5Impl {
  return native.addon && partSize > 0 && partSize % 64 === 0 ? 'native' : 'node';
}

/**
 * Computes the md5 and the S3 ETag of a byte stream as it is written, for a fixed part size.
 * An object of at most one part is uploaded with a single PUT, whose ETag is the plain md5;
 * a larger one gets md5(concat(part md5s)) + "-" + partCount. Natively both md5s are computed
 * in one pass, interleaved (~0.6x the CPU of hashing the bytes twice).
 */
export class EtagHasher {
  private readonly whole: Hash | undefined;
  private part: Hash | undefined;
  private readonly pair: Buffer | undefined;
  private partFill = 0;
  private readonly partMd5s: Buffer[] = [];
  private size = 0;

  constructor(
    readonly partSize: number,
    readonly impl: Md5Impl = defaultMd5Impl(partSize),
  ) {
    if (impl === 'native') {
      if (!native.addon) throw new Error(`the native md5 is not built (${native.why})`);
      this.pair = native.addon.md5PairNew(partSize);
    } else {
      this.whole = createHash('md5');
      this.part = createHash('md5');
    }
  }

  update(chunk: Buffer): void {
    this.size += chunk.length;
    if (this.pair) {
      for (const md5 of native.addon!.md5PairUpdate(this.pair, chunk)) this.partMd5s.push(md5);
      return;
    }
    this.whole!.update(chunk);
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(this.partSize - this.partFill, chunk.length - offset);
      this.part!.update(chunk.subarray(offset, offset + take));
      this.partFill += take;
      offset += take;
      if (this.partFill === this.partSize) {
        this.partMd5s.push(this.part!.digest());
        this.part = createHash('md5');
        this.partFill = 0;
      }
    }
  }

  /**
   * update, hashing on libuv's thread pool when native: the loop moving the bytes does not
   * hash them. Await each call before the next (and before digest).
   */
  async updateAsync(chunk: Buffer): Promise<void> {
    if (!this.pair) return this.update(chunk);
    this.size += chunk.length;
    const parts = await native.addon!.md5PairUpdateAsync(this.pair, [chunk]);
    for (const md5 of parts) this.partMd5s.push(md5);
  }

  /** md5 of each part completed so far (all of them only after `digest`). */
  get completedParts(): readonly Buffer[] {
    return this.partMd5s;
  }

  digest(): EtagResult {
    let md5: string;
    if (this.pair) {
      const [whole, last] = native.addon!.md5PairFinal(this.pair);
      if (last) this.partMd5s.push(last);
      md5 = whole.toString('hex');
    } else {
      if (this.partFill > 0 || this.partMd5s.length === 0) this.partMd5s.push(this.part!.digest());
      md5 = this.whole!.digest('hex');
    }
    const partMd5s = this.partMd5s;
    const etag =
      partMd5s.length === 1
        ? md5
        : `${createHash('md5').update(Buffer.concat(partMd5s)).digest('hex')}-${partMd5s.length}`;
    return { md5, etag, partMd5s, size: this.size };
  }
}

export function etagOf(
  data: Buffer,
  partSize = partSizeFor(data.length),
  impl: Md5Impl = defaultMd5Impl(partSize),
): EtagResult {
  const h = new EtagHasher(partSize, impl);
  h.update(data);
  return h.digest();
}

/** Source bytes batched per hash on the thread pool: one call per ~1 MiB, not per chunk. */
const MD5_BATCH_BYTES = 1024 * 1024;
/** Batches hashing at once per stream: the chunks they hold are the memory it costs. */
const MD5_BATCHES_IN_FLIGHT = 2;

/**
 * A plain md5 of a stream of chunks, computed off the calling thread when the addon is built
 * (libuv's pool, in batches, in order), with Node's crypto otherwise. `update` resolves at once
 * unless MD5_BATCHES_IN_FLIGHT batches are still hashing (the backpressure); the chunks must
 * not change until `digest`, which waits for them all.
 */
export class StreamMd5 {
  private readonly state = native.addon?.md5New();
  private readonly hash = this.state ? undefined : createHash('md5');
  private batch: Buffer[] = [];
  private batchBytes = 0;
  /** The batches queued, each started when the one before it is done (one state, in order). */
  private readonly running: Promise<unknown>[] = [];
  private last: Promise<unknown> = Promise.resolve();

  async update(chunk: Buffer): Promise<void> {
    if (this.hash) {
      this.hash.update(chunk);
      return;
    }
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    if (this.batchBytes >= MD5_BATCH_BYTES) this.send();
    while (this.running.length >= MD5_BATCHES_IN_FLIGHT) await this.running.shift();
  }

  async digest(): Promise<string> {
    if (this.hash) return this.hash.digest('hex');
    this.send();
    await Promise.all(this.running.splice(0));
    return native.addon!.md5PairFinal(this.state!)[0].toString('hex');
  }

  private send(): void {
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    const state = this.state!;
    this.last = this.last.then(() => native.addon!.md5PairUpdateAsync(state, batch));
    this.last.catch(() => {}); // awaited by update or digest, unless the stream was abandoned
    this.running.push(this.last);
  }
}

/** ETag as S3 sends it, without quotes. */
export function unquoteEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/"/g, '');
}

/** A plain md5 ETag (single-part upload, no SSE-KMS) is the md5 of the object's bytes. */
export function isPlainMd5(etag: string): boolean {
  return /^[0-9a-f]{32}$/.test(etag);
}
