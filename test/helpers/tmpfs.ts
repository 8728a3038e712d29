// A small tmpfs, so a test can fill a disk on purpose. Mounting needs root (or CAP_SYS_ADMIN);
// without it the test fails saying so, rather than pass without having filled anything.
import { execFileSync } from 'node:child_process';

export function mountTmpfs(dir: string, size: string): void {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (e) {
    const why = String((e as { stderr?: Buffer }).stderr ?? e)
      .trim()
      .split('\n')[0];
    throw new Error(
      `test/helpers/tmpfs.ts: cannot mount a ${size} tmpfs on ${dir} (${why}); ` +
        'the full-disk tests need root or CAP_SYS_ADMIN',
    );
  }
}

export function unmountTmpfs(dir: string): void {
  execFileSync('umount', [dir]);
}
