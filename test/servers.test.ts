// Smoke test of the test servers themselves: if these fail, every integration test's result
// against that server is meaningless.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  CopyObjectCommand,
  CompleteMultipartUploadCommand,
  HeadObjectCommand,
  RestoreObjectCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { startServer, testServerNames, type TestServer } from './helpers/servers.js';

async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// 1005 > the 1000-key page, so listing needs a continuation token; the names cover characters
// that must be URL-encoded in the request path and in the XML listing.
function smokeKeys(prefix: string): string[] {
  const keys: string[] = [];
  for (let i = 0; i < 1005; i++) {
    const n = String(i).padStart(4, '0');
    switch (i % 4) {
      case 0:
        keys.push(`${prefix}plate A/well ${n}.tif`);
        break;
      case 1:
        keys.push(`${prefix}Ünïcødé-µm/${n}.tif`);
        break;
      case 2:
        keys.push(`${prefix}a+b&c=d ${n}.tif`);
        break;
      default:
        keys.push(`${prefix}${n}.tif`);
    }
  }
  return keys;
}

async function listAll(s3: S3Client, bucket: string, prefix: string) {
  const keys: string[] = [];
  let pages = 0;
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    pages++;
    for (const o of page.Contents ?? []) keys.push(o.Key ?? '');
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
    if (page.IsTruncated) assert.ok(token, 'truncated page without NextContinuationToken');
  } while (token);
  return { keys, pages };
}

for (const name of testServerNames('all')) {
  describe(`test server: ${name}`, () => {
    let server: TestServer;
    let s3: S3Client;

    before(async () => {
      server = await startServer(name);
      s3 = server.client();
    });
    after(async () => {
      await server?.close();
    });

    it('lists exactly the 1005 uploaded keys across pages', async () => {
      const bucket = await server.newBucket('smoke-list');
      const prefix = 'smoke run/';
      const keys = smokeKeys(prefix);
      // outside the prefix: must not be listed
      const others = ['smoke run.tif', 'smoke runs/x.tif', 'other/0001.tif'];
      await forEachLimit([...keys, ...others], 16, async (key) => {
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: `body of ${key}` }));
      });

      const { keys: listed, pages } = await listAll(s3, bucket, prefix);
      assert.ok(pages >= 2, `expected a paginated listing, got ${pages} page(s)`);
      assert.equal(new Set(listed).size, listed.length, 'listing returned a key twice');
      assert.deepEqual([...listed].sort(), [...keys].sort());
    });

    it('round-trips a 2-part multipart upload byte-identically', async () => {
      const bucket = await server.newBucket('smoke-mpu');
      const key = 'plate A/ü+&=.tar.gz';
      const parts = [randomBytes(5 * 1024 * 1024), randomBytes(1)];
      const { UploadId } = await s3.send(
        new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
      );
      assert.ok(UploadId);
      const done: { ETag: string; PartNumber: number }[] = [];
      for (const [i, body] of parts.entries()) {
        const PartNumber = i + 1;
        const { ETag } = await s3.send(
          new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber, Body: body }),
        );
        assert.ok(ETag, `part ${PartNumber} has no ETag`);
        done.push({ ETag, PartNumber });
      }
      await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: done },
        }),
      );

      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      assert.ok(got.Body);
      const bytes = Buffer.from(await got.Body.transformToByteArray());
      const want = Buffer.concat(parts);
      assert.equal(bytes.length, want.length);
      assert.ok(bytes.equals(want), 'downloaded bytes differ from uploaded parts');
    });
  });
}

// The restore tests lean on exactly this: if moto stops emulating it, they prove nothing.
for (const name of testServerNames('glacier')) {
  describe(`test server: ${name} emulates Glacier`, () => {
    let server: TestServer;
    let s3: S3Client;
    before(async () => {
      server = await startServer(name);
      s3 = server.client();
    });
    after(async () => {
      await server?.close();
    });

    it('refuses GET of a GLACIER object until RestoreObject, then serves its bytes', async () => {
      const bucket = await server.newBucket('smoke-glacier');
      const key = 'cold/x.tar.gz';
      const body = randomBytes(1000);
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
      await s3.send(
        new CopyObjectCommand({
          Bucket: bucket,
          Key: key,
          CopySource: `${bucket}/${key}`,
          StorageClass: 'GLACIER',
          MetadataDirective: 'COPY',
        }),
      );
      const before = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(before.StorageClass, 'GLACIER');
      assert.equal(before.Restore, undefined);
      await assert.rejects(
        s3.send(new GetObjectCommand({ Bucket: bucket, Key: key })),
        (err: Error) => err.name === 'InvalidObjectState',
      );
      await s3.send(
        new RestoreObjectCommand({
          Bucket: bucket,
          Key: key,
          RestoreRequest: { Days: 1, GlacierJobParameters: { Tier: 'Standard' } },
        }),
      );
      const after = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.match(after.Restore ?? '', /ongoing-request="false", expiry-date="/);
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body));
    });
  });
}
