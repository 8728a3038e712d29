import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { native } from '../native/addon.js';

const zlibGzip = promisify(gzipCb);

/** What compresses one block into one gzip member. */
export type GzipEngineName = 'isal' | 'libdeflate' | 'zlib';
export const GZIP_ENGINES: readonly GzipEngineName[] = ['isal', 'libdeflate', 'zlib'];

/** The gzip levels each engine takes (--compression-level is 1-9). */
export const ENGINE_LEVELS: Record<GzipEngineName, { min: number; max: number }> = {
  // ISA-L's igzip has levels 0-3; its 0 is a much weaker algorithm, so 1-3 only.
  isal: { min: 1, max: 3 },
  libdeflate: { min: 1, max: 9 },
  zlib: { min: 1, max: 9 },
};

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

/** Why the libdeflate engine is not available, or undefined when it is. */
export const libdeflateMissing: string | undefined = native.addon ? undefined : native.why;

/** Why the ISA-L engine is not available, or undefined when it is. */
export const isalMissing: string | undefined = !native.addon
  ? native.why
  : native.addon.isalGzipMember
    ? undefined
    : 'the addon was built without ISA-L';

const INSTALL_HINT: Record<'isal' | 'libdeflate', string> = {
  isal: 'apt-get install libisal-dev, then npm rebuild',
  libdeflate: 'apt-get install libdeflate-dev, then npm rebuild',
};

/**
 * The engine for `level`: the one named, or by default the fastest one built that takes the
 * level: ISA-L for 1-3 (~2.5× libdeflate's speed, output ~1.5 % larger on image-like data),
 * libdeflate for the rest (~1.6-1.9× zlib's speed at the same ratio), else zlib. Naming an
 * engine that is not built, or a level it does not take, throws.
 */
export function gzipEngine(name?: GzipEngineName, level?: number): GzipEngine {
  const addon = native.addon;
  const takes = (e: GzipEngineName) =>
    level === undefined || (level >= ENGINE_LEVELS[e].min && level <= ENGINE_LEVELS[e].max);
  if (name !== undefined && !takes(name)) {
    const { min, max } = ENGINE_LEVELS[name];
    throw new Error(
      `the ${name} gzip engine takes levels ${min}-${max}, not ${level}: change the level, or leave the engine out to get the fastest one for the level`,
    );
  }
  const isal = addon?.isalGzipMember;
  if (name === 'isal' || (name === undefined && isal && takes('isal'))) {
    if (!isal) {
      throw new Error(
        `the isal gzip engine is not built (${isalMissing}): ${INSTALL_HINT.isal}; or use --gzip-engine libdeflate`,
      );
    }
    return { name: 'isal', gzip: (block, lvl) => isal(block, lvl) };
  }
  if (name === 'zlib' || (name === undefined && !addon)) return zlibEngine;
  if (!addon) {
    throw new Error(
      `the libdeflate gzip engine is not built (${libdeflateMissing}): ${INSTALL_HINT.libdeflate}; or use --gzip-engine zlib`,
    );
  }
  return { name: 'libdeflate', gzip: (block, lvl) => addon.gzipMember(block, lvl) };
}

/**
 * When the default engine for `level` is not the fastest one there is, why, and what to
 * install; undefined when it is.
 */
export function slowerDefault(level: number): string | undefined {
  const engine = gzipEngine(undefined, level).name;
  if (engine === 'zlib') {
    const than =
      level <= ENGINE_LEVELS.isal.max ? '~4x the CPU of isa-l' : '~1.6-1.9x the CPU of libdeflate';
    return `compressing with zlib (${than}), as the native gzip addon is not built (${libdeflateMissing}); apt-get install libdeflate-dev libisal-dev, then npm rebuild`;
  }
  if (engine === 'libdeflate' && level <= ENGINE_LEVELS.isal.max) {
    return `compressing with libdeflate (~2.5x the CPU of isa-l at level ${level}), as isa-l is not built (${isalMissing}); ${INSTALL_HINT.isal}`;
  }
  return undefined;
}
