// MultipartSink's single PUT with an md5 its writer already has (restore hashes every member as
// it checks it): the server gets that md5 as Content-MD5, so the object is stored only if the
// bytes it received are the ones hashed.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { S3Store } from '../../src/s3/store.js';
import { MultipartSink } from '../../src/s3/upload.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { getBytes, keysUnder, storeOver } from '../helpers/s3.js';
import { testServerNames, type TestServer } from '../helpers/servers.js';
import { useServer, type ServerSuite } from '../helpers/suite.js';

const clients: S3Client[] = [];

const storeAt = (server: TestServer, endpoint: string): S3Store =>
  storeOver(clients, server, endpoint, 1);

/** Writes `bytes` in 64 KiB chunks into a one-part sink that is given `md5`, and ends it. */
async function sinkPut(store: S3Store, bucket: string, key: string, bytes: Buffer, md5: Buffer) {
  const sink = new MultipartSink(store, bucket, key, bytes.length, { wholeMd5: () => md5 });
  const failed = once(sink, 'error').then(([e]) => {
    throw e as Error;
  });
  for (let i = 0; i < bytes.length; i += 65536) sink.write(bytes.subarray(i, i + 65536));
  sink.end();
  await Promise.race([once(sink, 'finish'), failed]);
}

/** A proxy in front of the suite's server that keeps the Content-MD5 of every PUT through it. */
async function md5Recorder(suite: ServerSuite): Promise<{ proxy: FaultProxy; sent: string[] }> {
  const sent: string[] = [];
  const proxy = await startFaultProxy(suite.server.endpoint, {
    rate: 0,
    onRequest: (req) => {
      if (req.method === 'PUT') sent.push(String(req.headers['content-md5']));
    },
  });
  return { proxy, sent };
}

/** Servers that refuse a body whose md5 is not its Content-MD5, as AWS does (s3rver and moto store it). */
const CHECKS_CONTENT_MD5 = new Set(['rgw']);

for (const name of testServerNames('all')) {
  describe(`a one-part upload with its writer's md5 against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-upload-');
    after(() => {
      for (const c of clients.splice(0)) c.destroy();
    });

    test('the PUT carries that md5 as Content-MD5; the object is stored byte for byte', async () => {
      const bucket = await suite.server.newBucket('up');
      const { proxy, sent } = await md5Recorder(suite);
      try {
        const store = storeAt(suite.server, proxy.endpoint);
        const bytes = randomBytes(300_000);
        const md5 = createHash('md5').update(bytes).digest();
        await sinkPut(store, bucket, 'right.bin', bytes, md5);
        assert.deepEqual(sent, [md5.toString('base64')]);
        assert.deepEqual(await getBytes(suite.client, bucket, 'right.bin'), bytes);
      } finally {
        await proxy.close();
      }
    });

    test('a wrong md5 is sent as it is, not replaced by a hash of the bytes; S3 refuses it', async () => {
      const bucket = await suite.server.newBucket('up');
      const { proxy, sent } = await md5Recorder(suite);
      try {
        const store = storeAt(suite.server, proxy.endpoint);
        const bytes = randomBytes(300_000);
        const wrong = createHash('md5').update(bytes).digest();
        wrong[0] = wrong[0]! ^ 1;
        const put = sinkPut(store, bucket, 'wrong.bin', bytes, wrong);
        if (CHECKS_CONTENT_MD5.has(name)) {
          await assert.rejects(put);
          assert.deepEqual(await keysUnder(suite.client, bucket, ''), []);
        } else await put.catch(() => {});
        assert.equal(sent[0], wrong.toString('base64'));
      } finally {
        await proxy.close();
      }
    });
  });
}
