import { readFileSync } from 'node:fs';
import { ENGINE_LEVELS, gzipEngine, type GzipEngineName } from '../archive/gzip-engine.js';
import { native } from '../native/addon.js';

export function version(): string {
  const pkg = JSON.parse(
    readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
  ) as { version: string };
  return pkg.version;
}

const LEVELS = { min: ENGINE_LEVELS.zlib.min, max: ENGINE_LEVELS.zlib.max };

/** `isal at levels 1-3, libdeflate at 4-9`: the default engine of each level, runs grouped. */
export function defaultEngines(pick: (level: number) => GzipEngineName): string {
  const runs: { name: GzipEngineName; from: number; to: number }[] = [];
  for (let level = LEVELS.min; level <= LEVELS.max; level++) {
    const name = pick(level);
    const last = runs.at(-1);
    if (last && last.name === name) last.to = level;
    else runs.push({ name, from: level, to: level });
  }
  return runs.map((r, i) => `${r.name} at ${i === 0 ? 'levels ' : ''}${r.from}-${r.to}`).join(', ');
}

/**
 * `imgbackup --version`: what a bug report needs to say which code compressed. Lines:
 * `imgbackup X`, `node vX (zlib Y)`, `gzip engine: …` (the default per level) and
 * `native addon: …` (its libraries' versions, or why it is not loaded).
 */
export function versionText(): string {
  const addon = native.addon;
  const libs = addon
    ? `libdeflate ${addon.libdeflateVersion}, ${addon.isalVersion ? `isa-l ${addon.isalVersion}` : 'isa-l not built in'}`
    : `not loaded (${native.why ?? 'unknown reason'})`;
  return [
    `imgbackup ${version()}`,
    `node ${process.version} (zlib ${process.versions.zlib})`,
    `gzip engine: ${defaultEngines((level) => gzipEngine(undefined, level).name)}`,
    `native addon: ${libs}`,
  ].join('\n');
}
