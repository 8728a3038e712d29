import { createRequire } from 'node:module';

/** What `npm install` builds from native/ (node-gyp): the gzip engines and the paired md5. */
export interface NativeAddon {
  gzipMember(block: Buffer, level: number): Promise<Buffer>;
  libdeflateVersion: string;
  /** Only when the addon was built with ISA-L (libisal-dev at install). */
  isalGzipMember?: (block: Buffer, level: number) => Promise<Buffer>;
  isalVersion?: string;
  /** A whole-and-parts md5 state for parts of `partSize` bytes (a multiple of 64). */
  md5PairNew(partSize: number): Buffer;
  /** Hashes `data`; returns the md5 of each part that ended in it. */
  md5PairUpdate(state: Buffer, data: Buffer): Buffer[];
  /** The md5 of everything, and of the last part (null if the data ended on a part's end). */
  md5PairFinal(state: Buffer): [Buffer, Buffer | null];
  /**
   * md5PairUpdate of each buffer in turn, on libuv's thread pool; one call in flight per state,
   * and neither the state nor the buffers touched until it settles.
   */
  md5PairUpdateAsync(state: Buffer, data: readonly Buffer[]): Promise<Buffer[]>;
  /** A plain md5's state, for md5PairUpdateAsync and md5PairFinal (whose part is then null). */
  md5New(): Buffer;
}

/**
 * IMGBACKUP_NO_ADDON=1 (a test and debug switch, README "Tests") makes the process act as if the
 * addon had not been built, so the zlib fallback can be exercised on a machine that has it.
 */
export const NO_ADDON_ENV = 'IMGBACKUP_NO_ADDON';

function load(): { addon?: NativeAddon; why?: string } {
  if (process.env[NO_ADDON_ENV] === '1') return { why: `${NO_ADDON_ENV}=1 is set` };
  try {
    const require = createRequire(import.meta.url);
    // dist/src/native/ → the package root's build/
    return { addon: require('../../../build/Release/imgbackup_gzip.node') as NativeAddon };
  } catch (err) {
    return { why: (err as Error).message.split('\n')[0] ?? String(err) };
  }
}

/** The addon, or why it could not be loaded (libdeflate-dev was missing at install, say). */
export const native: { addon?: NativeAddon; why?: string } = load();
