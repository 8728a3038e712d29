/**
 * --include / --exclude: shell-style globs over a member's listing path (the key without its
 * leading `projects/`, the path under --to-dir). `*` and `?` stay within one path segment, `**`
 * spans segments, `[...]` is a character class; everything else is literal.
 */
export function globRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      // `**/` also matches no directory at all
      if (glob[i + 2] === '/') {
        re += '(?:.*/)?';
        i += 2;
      } else {
        re += '.*';
        i += 1;
      }
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        const body = glob.slice(i + 1, end).replace(/\\/g, '\\\\');
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 'u');
}

export interface PathFilter {
  /** Whether a listing path is restored: it matches some include (or there are none) and no exclude. */
  wants(path: string): boolean;
  /** The include globs that match none of these paths. */
  unmatchedIncludes(paths: Iterable<string>): string[];
}

export function pathFilter(includes: string[], excludes: string[]): PathFilter {
  const inc = includes.map((g) => ({ g, re: globRegExp(g) }));
  const exc = excludes.map(globRegExp);
  return {
    wants: (path) =>
      (inc.length === 0 || inc.some((i) => i.re.test(path))) && !exc.some((re) => re.test(path)),
    unmatchedIncludes(paths) {
      const left = new Set(inc);
      for (const p of paths) for (const i of left) if (i.re.test(p)) left.delete(i);
      return [...left].map((i) => i.g);
    },
  };
}
