// What `npm install` built, read from the build output itself rather than from the code under
// test: tests of a gzip engine assert it works where it was built, and the fallback (a clear
// error naming what to install, or zlib) where it was not. CI separately insists on ISA-L.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ADDON_FILE = fileURLToPath(
  new URL('../../../build/Release/imgbackup_gzip.node', import.meta.url),
);

/** IMGBACKUP_NO_ADDON=1 makes the CLI act as if the addon were not built (src/native/addon.ts). */
const present = existsSync(ADDON_FILE) && process.env.IMGBACKUP_NO_ADDON !== '1';

export const BUILT = {
  /** The addon: libdeflate's engine and the paired md5. */
  libdeflate: present,
  /** The addon was linked against ISA-L (libisal-dev was there at install). */
  isal: present && readFileSync(ADDON_FILE).includes('libisal.so'),
};

/** The error gzipEngine gives for an engine that was not built: what to install. */
export const NOT_BUILT: Record<'isal' | 'libdeflate', RegExp> = {
  isal: /the isal gzip engine is not built \(.+\): apt-get install libisal-dev, then npm rebuild/,
  libdeflate:
    /the libdeflate gzip engine is not built \(.+\): apt-get install libdeflate-dev, then npm rebuild/,
};
