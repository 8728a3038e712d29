/**
 * restore-request --prefix: the same requests and ledger as --sources, for data outside plates:
 * every object under one prefix whose path below it passes --include / --exclude.
 */
import pLimit from 'p-limit';
import { errorMessage, PlateError, UsageError } from '../../errors.js';
import { isAbort, type ObjectInfo, type S3Store } from '../../s3/store.js';
import type { PlateResult } from '../pool.js';
import { checkBuckets } from '../preflight.js';
import { pathFilter } from './glob.js';
import { ledgerSkips, openLedger } from './ledger.js';
import { classify, SOURCE_HEADS_IN_FLIGHT } from './source-objects.js';
import {
  checkSourceTier,
  requestPlate,
  RESTORE_REQUESTS_IN_FLIGHT,
  type RequestOptions,
} from './source-request.js';

export interface PrefixRequestOptions extends RequestOptions {
  /** `s3://bucket/prefix/` as given. */
  url: string;
  includes: string[];
  excludes: string[];
  onDone?: (r: PlateResult) => void;
}

/** `s3://bucket/prefix` → its bucket and prefix; anything else is a usage error. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!m) throw new UsageError(`--prefix ${url}: not an s3://bucket/prefix/ address`);
  return { bucket: m[1]!, prefix: m[2]! };
}

export function prefixScope(o: { url: string; includes: string[]; excludes: string[] }): string {
  const f = (flag: string, globs: string[]) => globs.map((g) => ` ${flag} ${JSON.stringify(g)}`);
  return `${o.url}${f('--include', o.includes).join('')}${f('--exclude', o.excludes).join('')}`;
}

async function listWanted(
  store: S3Store,
  opts: PrefixRequestOptions,
  bucket: string,
  prefix: string,
): Promise<ObjectInfo[]> {
  const filter = pathFilter(opts.includes, opts.excludes);
  const all: ObjectInfo[] = [];
  const paths: string[] = [];
  for await (const o of store.list(bucket, prefix, { restoreStatus: true })) {
    const path = o.key.slice(prefix.length);
    paths.push(path);
    if (filter.wants(path)) all.push(o);
  }
  if (paths.length === 0)
    throw new UsageError(`--prefix ${opts.url}: no objects under it; check the prefix`);
  const unmatched = filter.unmatchedIncludes(paths);
  if (unmatched.length > 0)
    throw new UsageError(
      `--include ${unmatched.map((g) => JSON.stringify(g)).join(', ')} matches nothing under ${opts.url} (globs are over the key below the prefix)`,
    );
  return all;
}

export async function restoreRequestPrefix(
  store: S3Store,
  opts: PrefixRequestOptions,
): Promise<PlateResult[]> {
  const { bucket, prefix } = parseS3Url(opts.url);
  await checkBuckets(store, [bucket]);
  const started = Date.now();
  const listed = await listWanted(store, opts, bucket, prefix);
  // Opened (and checked against this run) only once the prefix proved real: a typo leaves no file.
  const ledger =
    opts.ledger && !opts.dryRun ? openLedger(opts.ledger, prefixScope(opts)) : undefined;
  try {
    const objects = await classify(
      store,
      bucket,
      listed,
      { restoreStatusSeen: false },
      pLimit(SOURCE_HEADS_IN_FLIGHT),
      (key) => ledgerSkips(ledger?.last(key)),
    );
    const looked = {
      plateId: opts.url,
      tag: opts.url,
      bucket,
      objects,
      followUp: 'run the same restore-request --ledger again later: it retries only the errors',
    };
    checkSourceTier([looked], opts.tier);
    let result: PlateResult;
    try {
      const r = await requestPlate(store, looked, opts, ledger, pLimit(RESTORE_REQUESTS_IN_FLIGHT));
      result = { ...r, seconds: (Date.now() - started) / 1000 };
    } catch (err) {
      if (isAbort(err) || !(err instanceof PlateError)) throw err;
      result = {
        plateId: opts.url,
        tag: opts.url,
        status: 'failed',
        message: errorMessage(err),
        files: objects.length,
        bytesIn: 0,
        bytesOut: 0,
        seconds: (Date.now() - started) / 1000,
      };
    }
    opts.onDone?.(result);
    return [result];
  } finally {
    ledger?.close();
  }
}
