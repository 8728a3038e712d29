import { createHash, type Hash } from 'node:crypto';
import { EtagHasher, isPlainMd5, MIN_PART_SIZE, partSizeFor } from '../../integrity/etag.js';

const MiB = 1024 * 1024;
/** Part sizes uploaders commonly use (lib-storage 5 MiB, aws CLI 8 MiB doubled, round MiBs). */
const COMMON_PART_SIZES = [5, 8, 10, 16, 25, 32, 50, 64, 100, 128, 256, 512, 1024].map(
  (n) => n * MiB,
);
/** Each candidate costs one more md5 pass over the member; a handful is plenty. */
const MAX_CANDIDATES = 4;

/**
 * Part sizes that give an object of `size` bytes exactly the part count of a multipart ETag
 * (`…-N`), most likely first: the aws CLI's rule, then common sizes, then size/N rounded up to
 * a MiB. Only an md5 with the right one reproduces the ETag; none may.
 */
export function candidatePartSizes(size: number, etag: string): number[] {
  const m = /-(\d+)$/.exec(etag);
  if (!m) return [];
  const parts = Number(m[1]);
  const fits = (p: number) => p >= MIN_PART_SIZE && Math.ceil(size / p) === parts;
  const out: number[] = [];
  const add = (p: number) => {
    if (fits(p) && !out.includes(p)) out.push(p);
  };
  try {
    add(partSizeFor(size));
  } catch {
    // larger than S3 stores: no aws CLI rule applies
  }
  for (const p of COMMON_PART_SIZES) add(p);
  add(Math.ceil(size / parts / MiB) * MiB);
  return out.slice(0, MAX_CANDIDATES);
}

/** How a member's bytes were proven to be the archived object's. */
export type MemberProof = 'md5' | 'multipart-etag' | 'tarball-md5';

export interface Expected {
  size: number;
  /** The source object's ETag when it was archived (T_file_etags_s3.txt); absent for old archives. */
  etag?: string;
}

/** Hashes a member as it streams: its md5, and its ETag at each candidate part size. */
export class MemberHasher {
  private readonly md5: Hash = createHash('md5');
  private readonly etags: { partSize: number; h: EtagHasher }[];
  size = 0;

  constructor(readonly expected: Expected | undefined) {
    const etag = expected?.etag ?? '';
    this.etags = isPlainMd5(etag)
      ? []
      : candidatePartSizes(expected?.size ?? 0, etag).map((partSize) => ({
          partSize,
          h: new EtagHasher(partSize, 'node'),
        }));
  }

  update(chunk: Buffer): void {
    this.size += chunk.length;
    this.md5.update(chunk);
    for (const e of this.etags) e.h.update(chunk);
  }

  /**
   * The verdict: a problem (size or bytes differ from the record), or the proof that holds. A
   * member whose record cannot be reproduced here is vouched for by the tarball's md5 only,
   * which the caller checks before presenting it as restored.
   */
  verdict(): { md5: string; problem?: string; proof: MemberProof } {
    const md5 = this.md5.digest('hex');
    const exp = this.expected;
    if (exp && exp.size !== this.size)
      return {
        md5,
        proof: 'tarball-md5',
        problem: `${this.size} bytes, the listing says ${exp.size}`,
      };
    const etag = exp?.etag;
    if (etag && isPlainMd5(etag)) {
      return md5 === etag
        ? { md5, proof: 'md5' }
        : { md5, proof: 'md5', problem: `md5 ${md5}, the archived object's ETag is ${etag}` };
    }
    if (etag && this.etags.some((e) => e.h.digest().etag === etag))
      return { md5, proof: 'multipart-etag' };
    return { md5, proof: 'tarball-md5' };
  }
}
