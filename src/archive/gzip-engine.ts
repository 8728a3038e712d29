import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';

const zlibGzip = promisify(gzipCb);

/** What compresses one block into one gzip member. */
export type GzipEngineName = 'libdeflate' | 'zlib';
export const GZIP_ENGINES: readonly GzipEngineName[] = ['libdeflate', 'zlib'];

export interface GzipEngine {
  name: GzipEngineName;
  /** One complete gzip member of `block`, compressed off the main thread. */
  gzip(block: Buffer, level: number): Promise<Buffer>;
}

/**
 * memLevel 9 (zlib's default is 8): a larger hash table finds matches with fewer probes; on the
 * bench's image-like data ~20 % faster at level 1 and ~13 % at level 6, output no larger.
 */
const ZLIB_MEM_LEVEL = 9;

/**
 * Room in zlib's output buffer beyond the block itself, more than deflate's worst-case growth
 * plus the gzip header and trailer. With zlib's default 16 KiB output buffer a 1 MiB block
 * takes ~40 round trips between the thread pool and the main thread; with block + this, one.
 * (Were it ever too small, zlib would only add a second output chunk.)
 */
const ZLIB_OUTPUT_SLACK = 64 * 1024;

/** The zlib options every block is compressed with. */
export function zlibOptions(level: number): { level: number; memLevel: number } {
  return { level, memLevel: ZLIB_MEM_LEVEL };
}

const zlibEngine: GzipEngine = {
  name: 'zlib',
  gzip: (block, level) =>
    zlibGzip(block, { ...zlibOptions(level), chunkSize: block.length + ZLIB_OUTPUT_SLACK }),
};

interface NativeGzip {
  gzipMember(block: Buffer, level: number): Promise<Buffer>;
  libdeflateVersion: string;
}

/** The addon `npm install` builds from native/ (node-gyp); absent if libdeflate-dev was missing. */
function loadNative(): { addon?: NativeGzip; why?: string } {
  try {
    const require = createRequire(import.meta.url);
    // dist/src/archive/ → the package root's build/
    return { addon: require('../../../build/Release/imgbackup_gzip.node') as NativeGzip };
  } catch (err) {
    return { why: (err as Error).message.split('\n')[0] ?? String(err) };
  }
}

const native = loadNative();

/** Why the libdeflate engine is not available, or undefined when it is. */
export const libdeflateMissing: string | undefined = native.addon ? undefined : native.why;

/**
 * The engine by name; by default libdeflate (~1.6-1.9× zlib's speed at the same level and ratio)
 * when its addon was built, else zlib. Asking for libdeflate when it is missing throws.
 */
export function gzipEngine(name?: GzipEngineName): GzipEngine {
  const addon = native.addon;
  if (name === 'zlib' || (name === undefined && !addon)) return zlibEngine;
  if (!addon) {
    throw new Error(
      `the libdeflate gzip engine is not built (${libdeflateMissing}): apt-get install libdeflate-dev, then npm rebuild; or use --gzip-engine zlib`,
    );
  }
  return { name: 'libdeflate', gzip: (block, level) => addon.gzipMember(block, level) };
}
