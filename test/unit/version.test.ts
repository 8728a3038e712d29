// `imgbackup --version` names the gzip engine per level and the addon's library versions, read
// here from the headers it was built against, so a bug report says which code compressed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { defaultEngines } from '../../src/cli/version.js';
import { BUILT } from '../helpers/built.js';
import { BIN } from '../helpers/cli.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

function versionOf(env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(process.execPath, [BIN, '--version'], {
    encoding: 'utf8',
    // IMGBACKUP_NO_ADDON of the run reaches the CLI, as BUILT (what this test expects) sees it
    env: {
      PATH: process.env.PATH,
      ...(process.env.IMGBACKUP_NO_ADDON
        ? { IMGBACKUP_NO_ADDON: process.env.IMGBACKUP_NO_ADDON }
        : {}),
      ...env,
    },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return r.stdout;
}

const header = (file: string, re: RegExp): string => {
  const m = re.exec(readFileSync(file, 'utf8'));
  assert.ok(m, `${re} in ${file}`);
  return m.slice(1).join('.');
};

test('defaultEngines groups consecutive levels of one engine', () => {
  assert.equal(
    defaultEngines((l) => (l <= 3 ? 'isal' : 'libdeflate')),
    'isal at levels 1-3, libdeflate at 4-9',
  );
  assert.equal(
    defaultEngines(() => 'zlib'),
    'zlib at levels 1-9',
  );
  assert.equal(
    defaultEngines((l) => (l === 5 ? 'zlib' : 'libdeflate')),
    'libdeflate at levels 1-4, zlib at 5-5, libdeflate at 6-9',
  );
});

test('--version without the addon: zlib at every level, and why the addon is not loaded', () => {
  assert.equal(
    versionOf({ IMGBACKUP_NO_ADDON: '1' }),
    `imgbackup ${pkg.version}\n` +
      `node ${process.version} (zlib ${process.versions.zlib})\n` +
      'gzip engine: zlib at levels 1-9\n' +
      'native addon: not loaded (IMGBACKUP_NO_ADDON=1 is set)\n',
  );
});

test('--version with the addon this machine built: the engines and the library versions of its headers', () => {
  const out = versionOf();
  if (!BUILT.libdeflate) {
    // npm install could not build it (no libdeflate-dev): the CLI says so
    assert.match(out, /\ngzip engine: zlib at levels 1-9\nnative addon: not loaded \(.+\)\n$/);
    return;
  }
  const libdeflate = header('/usr/include/libdeflate.h', /LIBDEFLATE_VERSION_STRING\s+"([^"]+)"/);
  const isalH = '/usr/include/isa-l.h';
  const hasIsal = BUILT.isal;
  const isal = hasIsal
    ? `isa-l ${header(isalH, /ISAL_MAJOR_VERSION (\d+)\s+#define ISAL_MINOR_VERSION (\d+)\s+#define ISAL_PATCH_VERSION (\d+)/)}`
    : 'isa-l not built in';
  assert.equal(
    out,
    `imgbackup ${pkg.version}\n` +
      `node ${process.version} (zlib ${process.versions.zlib})\n` +
      `gzip engine: ${hasIsal ? 'isal at levels 1-3, libdeflate at 4-9' : 'libdeflate at levels 1-9'}\n` +
      `native addon: libdeflate ${libdeflate}, ${isal}\n`,
  );
});
