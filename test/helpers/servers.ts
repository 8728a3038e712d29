// S3 servers for the integration tests: s3rver in-process, a real radosgw that scripts/test.sh
// starts and describes through IMGBACKUP_TEST_RGW_* env vars, and moto (the only one emulating
// Glacier storage classes and RestoreObject), started by scripts/moto-start.sh and described by
// IMGBACKUP_TEST_MOTO_ENDPOINT.
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

export type TestServerName = 's3rver' | 'rgw' | 'moto';

export interface TestServer {
  name: TestServerName;
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** A new client on each call; all are destroyed by close(). */
  client(): S3Client;
  /** Creates a bucket no other test uses and returns its name. */
  newBucket(prefix?: string): Promise<string>;
  close(): Promise<void>;
}

const ALL_SERVERS: readonly TestServerName[] = ['s3rver', 'rgw', 'moto'];

/** Servers that emulate Glacier storage classes and RestoreObject. */
const GLACIER_SERVERS: readonly TestServerName[] = ['moto'];

/**
 * Which servers a test file runs on, among those IMGBACKUP_TEST_SERVERS selects (comma list,
 * default all three): 'general' (the default) are the S3 stores every behaviour is checked on
 * (s3rver, radosgw); 'all' adds moto; 'glacier' is moto alone, for what needs archive classes.
 */
export function testServerNames(
  scope: 'general' | 'all' | 'glacier' = 'general',
): TestServerName[] {
  const names = selectedServerNames();
  if (scope === 'all') return names;
  const glacier = (n: TestServerName) => GLACIER_SERVERS.includes(n);
  return names.filter((n) => (scope === 'glacier' ? glacier(n) : !glacier(n)));
}

/** IMGBACKUP_TEST_SERVERS, checked. */
export function selectedServerNames(): TestServerName[] {
  const raw = process.env.IMGBACKUP_TEST_SERVERS ?? ALL_SERVERS.join(',');
  const names: TestServerName[] = [];
  for (const part of raw.split(',')) {
    const name = part.trim();
    if (name === '') continue;
    if (!(ALL_SERVERS as readonly string[]).includes(name)) {
      throw new Error(
        `IMGBACKUP_TEST_SERVERS: unknown server '${name}' (known: ${ALL_SERVERS.join(', ')})`,
      );
    }
    if (!names.includes(name as TestServerName)) names.push(name as TestServerName);
  }
  if (names.length === 0) throw new Error('IMGBACKUP_TEST_SERVERS names no server');
  return names;
}

export async function startServer(name: TestServerName): Promise<TestServer> {
  switch (name) {
    case 's3rver':
      return startS3rver();
    case 'rgw':
      return connectRgw();
    case 'moto':
      return connectMoto();
    default:
      throw new Error(`unknown test server '${String(name)}'`);
  }
}

const S3_BUCKET_MAX = 63;

/** A valid, unique S3 bucket name: lowercase letters, digits and '-', 3-63 chars. */
export function uniqueBucketName(prefix = 'test'): string {
  const suffix = `${Date.now().toString(36)}-${randomBytes(5).toString('hex')}`;
  const clean = prefix
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, S3_BUCKET_MAX - suffix.length - 1)
    .replace(/-+$/, '');
  return `${clean || 'test'}-${suffix}`;
}

interface Endpoint {
  name: TestServerName;
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

function makeServer(ep: Endpoint, onClose: () => Promise<void>): TestServer {
  const clients: S3Client[] = [];
  let closed = false;
  const client = (): S3Client => {
    if (closed) throw new Error(`${ep.name} test server is closed`);
    const c = new S3Client({
      endpoint: ep.endpoint,
      region: ep.region,
      forcePathStyle: true,
      credentials: { accessKeyId: ep.accessKeyId, secretAccessKey: ep.secretAccessKey },
      // The SDK's default (aws-chunked bodies with a CRC trailer) is refused by radosgw (411)
      // and stored framing-and-all as object data by s3rver.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    clients.push(c);
    return c;
  };
  let admin: S3Client | undefined;
  return {
    ...ep,
    client,
    async newBucket(prefix?: string): Promise<string> {
      admin ??= client();
      const bucket = uniqueBucketName(prefix);
      await admin.send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const c of clients) c.destroy();
      await onClose();
    },
  };
}

/** s3rver paginates with a DES continuation token, which OpenSSL 3 only has in its legacy provider. */
function assertLegacyOpenssl(): void {
  try {
    createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
  } catch {
    throw new Error(
      's3rver needs OpenSSL legacy ciphers for list pagination: run with ' +
        'NODE_OPTIONS=--openssl-legacy-provider (scripts/test.sh sets it)',
    );
  }
}

async function startS3rver(): Promise<TestServer> {
  assertLegacyOpenssl();
  const directory = await mkdtemp(join(tmpdir(), 'imgbackup-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory,
    silent: true,
    // path-style only: never reinterpret the Host header as a bucket name
    vhostBuckets: false,
  });
  let port: number;
  try {
    ({ port } = await server.run());
  } catch (err) {
    await rm(directory, { recursive: true, force: true });
    throw err;
  }
  return makeServer(
    {
      name: 's3rver',
      endpoint: `http://127.0.0.1:${port}`,
      // the only key pair s3rver accepts
      accessKeyId: 'S3RVER',
      secretAccessKey: 'S3RVER',
      region: 'us-east-1',
    },
    async () => {
      try {
        await server.close();
      } finally {
        await rm(directory, { recursive: true, force: true });
      }
    },
  );
}

async function connectMoto(): Promise<TestServer> {
  const endpoint = process.env.IMGBACKUP_TEST_MOTO_ENDPOINT;
  if (!endpoint) {
    throw new Error(
      'moto test server: IMGBACKUP_TEST_MOTO_ENDPOINT must be set. Run the tests with `npm test` ' +
        '(scripts/test.sh starts moto), or leave moto out of IMGBACKUP_TEST_SERVERS.',
    );
  }
  // moto takes any key pair; its data lives in its memory and goes with scripts/moto-stop.sh
  return probed(
    makeServer(
      {
        name: 'moto',
        endpoint,
        accessKeyId: 'motoaccesskey',
        secretAccessKey: 'motosecretkey',
        region: 'us-east-1',
      },
      async () => {},
    ),
  );
}

/** Fails here, with the endpoint in the message, rather than in the first test's first request. */
async function probed(server: TestServer): Promise<TestServer> {
  const probe = server.client();
  try {
    await probe.send(new ListBucketsCommand({}));
  } catch (err) {
    await server.close();
    throw new Error(
      `${server.name} test server at ${server.endpoint} is not usable: ${String(err)}`,
      {
        cause: err,
      },
    );
  }
  return server;
}

async function connectRgw(): Promise<TestServer> {
  const env = process.env;
  const endpoint = env.IMGBACKUP_TEST_RGW_ENDPOINT;
  const accessKeyId = env.IMGBACKUP_TEST_RGW_ACCESS_KEY;
  const secretAccessKey = env.IMGBACKUP_TEST_RGW_SECRET_KEY;
  if (!endpoint || !accessKeyId || !secretAccessKey) {
    throw new Error(
      'rgw test server: IMGBACKUP_TEST_RGW_ENDPOINT, IMGBACKUP_TEST_RGW_ACCESS_KEY and ' +
        'IMGBACKUP_TEST_RGW_SECRET_KEY must be set. Run the tests with `npm test` ' +
        '(scripts/test.sh starts radosgw), or set IMGBACKUP_TEST_SERVERS=s3rver.',
    );
  }
  return probed(
    makeServer(
      {
        name: 'rgw',
        endpoint,
        accessKeyId,
        secretAccessKey,
        region: env.IMGBACKUP_TEST_RGW_REGION || 'us-east-1',
      },
      // radosgw is owned by scripts/test.sh (or whoever set the env); every test uses its own
      // buckets, so there is nothing to tear down here
      async () => {},
    ),
  );
}
