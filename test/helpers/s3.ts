// Reads the tests make straight from a server (never through the tool), to check what it wrote.
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { S3Store } from '../../src/s3/store.js';
import type { TestServer } from './servers.js';

export async function getBytes(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

/**
 * A plate's lease (`…/workspace/backup/T.lease`): coordination state that every claim rewrites
 * on a store with conditional PUTs. Bucket comparisons leave it out; the lease tests read it.
 */
export const isLeaseKey = (key: string | undefined) =>
  key !== undefined && /\/workspace\/backup\/[^/]+\.lease$/.test(key);

async function listAll(client: S3Client, bucket: string, prefix?: string) {
  const out: { Key?: string; ETag?: string; LastModified?: Date }[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    out.push(...(page.Contents ?? []).filter((o) => !isLeaseKey(o.Key)));
    token = page.NextContinuationToken;
  } while (token);
  return out;
}

/** Every key under a prefix, sorted. */
export async function keysUnder(
  client: S3Client,
  bucket: string,
  prefix: string,
): Promise<string[]> {
  return (await listAll(client, bucket, prefix)).map((o) => o.Key!).sort();
}

/** Every key of a bucket with its ETag and mtime, to prove a run changed nothing. */
export async function snapshot(client: S3Client, bucket: string): Promise<string[]> {
  return (await listAll(client, bucket))
    .map((o) => `${o.Key} ${o.ETag} ${o.LastModified?.toISOString()}`)
    .sort();
}

/**
 * An S3Store over a test server, for tests that drive core modules directly, made as the tool
 * makes its own (path style, checksums only when S3 requires them). Its client joins `clients`,
 * which the test file destroys before the server stops.
 */
export function storeOver(
  clients: S3Client[],
  server: TestServer,
  endpoint = server.endpoint,
  maxAttempts = 3,
): S3Store {
  const client = new S3Client({
    endpoint,
    region: server.region,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    forcePathStyle: true,
    maxAttempts,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  clients.push(client);
  return new S3Store(client, new AbortController().signal);
}
