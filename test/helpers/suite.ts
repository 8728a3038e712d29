// The setup every S3 test file needs: a server, a client on it, and a scratch directory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { startServer, type TestServer, type TestServerName } from './servers.js';

export interface ServerSuite {
  server: TestServer;
  /** Straight to the server, never through the tool: what tests upload and check with. */
  client: S3Client;
  work: string;
}

/**
 * Registers before/after hooks in the calling describe block; the returned object is filled
 * before its tests run. Hooks the block adds later run after these (before) and before (after).
 */
export function useServer(name: TestServerName, workPrefix: string): ServerSuite {
  const suite = {} as ServerSuite;
  before(async () => {
    suite.server = await startServer(name);
    suite.client = suite.server.client();
    suite.work = await mkdtemp(join(tmpdir(), workPrefix));
  });
  after(async () => {
    // its keep-alive sockets would keep this test process alive after the last test
    suite.client?.destroy();
    await suite.server?.close();
    if (suite.work) await rm(suite.work, { recursive: true, force: true });
  });
  return suite;
}
