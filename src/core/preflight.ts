import { access, constants, stat } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import { httpStatus, s3ErrorCode, type S3Store } from '../s3/store.js';

/** One line that says what failed and what to do, for errors that stop the whole run. */
export function describeS3Failure(err: unknown, what: string): string | undefined {
  const code = s3ErrorCode(err);
  const status = httpStatus(err);
  const msg = (err as Error)?.message ?? '';
  if (code === 'NoSuchBucket' || (code === 'NotFound' && status === 404)) {
    return `${what}: bucket does not exist; check the bucket name and --region`;
  }
  if (code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed' || status === 301) {
    return `${what}: bucket is in another region; pass --region`;
  }
  if (code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch') {
    return `${what}: credentials were refused (${code}); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --profile`;
  }
  if (code === 'CredentialsProviderError' || /Could not load credentials/i.test(msg)) {
    return `${what}: no AWS credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or --profile`;
  }
  if (code === 'AccessDenied' || code === 'Forbidden' || status === 403) {
    return `${what}: access denied; the credentials may not read/write this bucket`;
  }
  if (/Region is missing/i.test(msg)) {
    return `${what}: no AWS region configured; pass --region or set AWS_REGION`;
  }
  const net = (err as { code?: string })?.code ?? code;
  if (
    ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'TimeoutError'].includes(
      net,
    )
  ) {
    return `${what}: cannot reach the S3 endpoint (${net}); check --endpoint-url and the network`;
  }
  return undefined;
}

/** Checks both buckets answer before any plate starts, so a typo fails in seconds, not hours. */
export async function checkBuckets(store: S3Store, buckets: string[]): Promise<void> {
  for (const bucket of new Set(buckets)) {
    try {
      await store.headBucket(bucket);
    } catch (err) {
      const line = describeS3Failure(err, `s3://${bucket}`);
      if (line) throw new ConfigError(line);
      throw err;
    }
  }
}

export async function checkTmpdir(dir: string): Promise<void> {
  try {
    const s = await stat(dir);
    if (!s.isDirectory()) throw new ConfigError(`--tmpdir ${dir}: not a directory`);
    await access(dir, constants.W_OK);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      `--tmpdir ${dir}: not a writable directory (${(err as NodeJS.ErrnoException).code}); create it or pass another`,
    );
  }
}
