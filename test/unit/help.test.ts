// What `imgbackup <command> --help` shows, as a user reads it (80 columns when not a terminal).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { describe, test } from 'node:test';
import { BIN, cliBaseEnv } from '../helpers/cli.js';

const COMMANDS = [
  'plan',
  'archive',
  'verify',
  'collect-deletes',
  'delete',
  'restore-request',
  'restore-status',
  'restore',
];
const help = (args: string[]) =>
  execFileSync(process.execPath, [BIN, ...args, '--help'], { env: cliBaseEnv(), encoding: 'utf8' });

/** The text between the usage line and the first list (Options:, Commands:). */
function description(text: string): string[] {
  const lines = text.split('\n');
  const end = lines.findIndex((l) => /^(Options|Commands):$/.test(l));
  return lines.slice(1, end).filter((l) => l !== '');
}

describe('--help', () => {
  test('the top level lists every command', () => {
    const text = help([]);
    for (const c of COMMANDS) assert.match(text, new RegExp(`^  ${c} \\[options\\]`, 'm'), c);
  });

  for (const c of ['', ...COMMANDS]) {
    test(`${c || 'imgbackup'}: the description is wrapped as one paragraph, not as two widths`, () => {
      const lines = description(help(c ? [c] : []));
      assert.ok(lines.length > 0);
      // A line broken before a word that would have fitted was broken by hand, at another width.
      // (One that ends a sentence may be short: a paragraph of its own.)
      for (const [i, line] of lines.slice(0, -1).entries()) {
        const next = lines[i + 1]!.trimStart().split(' ')[0]!;
        if (/[.:]$/.test(line)) continue;
        assert.ok(
          line.length + 1 + next.length > 80,
          `line ${i + 1} is cut short: ${JSON.stringify(line)}`,
        );
      }
    });
  }

  test('defaults are shown as a user would write them, never as milliseconds or []', () => {
    for (const c of COMMANDS) {
      const text = help([c]);
      assert.doesNotMatch(text, /\(default: \[\]\)/, c);
      assert.doesNotMatch(text, /default: \d{4,}\)/, c);
      assert.match(text, /--lease-ttl <duration>[^]*?\(default: 5m\)/, c);
    }
    assert.match(
      help(['archive']),
      /--timeout <duration> +with --wait: give up after this long \(default: 2d\)/,
    );
    assert.match(
      help(['restore-status']),
      /--timeout <duration> +with --wait: give up after this long\s+\(default: 12h\)/,
    );
    assert.match(help(['restore-status']), /--poll <duration>[^(]*\(default: 5m\)/);
  });

  test('a help that cannot be written (a full disk) is a failure, in one line', () => {
    const full = openSync('/dev/full', 'w');
    try {
      const r = spawnSync(process.execPath, [BIN, 'archive', '--help'], {
        env: cliBaseEnv(),
        encoding: 'utf8',
        stdio: ['ignore', full, 'pipe'],
      });
      assert.equal(r.status, 1);
      assert.equal(r.stderr, 'imgbackup: cannot write stdout (ENOSPC)\n');
    } finally {
      closeSync(full);
    }
  });
});
