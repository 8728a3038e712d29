// Shared by the restore tests: archived plates in fresh buckets, and moving their cold objects
// into an archive storage class the way users do (an in-place copy).
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type S3Client,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { plateArgs, runCli, serverEnv, type CliResult } from './cli.js';
import {
  BATCH,
  plateObjects,
  PROJECT,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
  type GroundTruth,
} from './fixtures.js';
import type { ServerSuite } from './suite.js';

export const tagOf = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;
export const coldDir = `imaging_analysis/${PROJECT}/plates/`;

export interface ArchivedCase {
  live: string;
  cold: string;
  dir: string;
  csv: string;
  /** Per plate: every object the test uploaded (folder markers included). */
  truth: Map<string, GroundTruth>;
  run: (cmd: string, extra?: string[], plates?: FixturePlate[]) => Promise<CliResult>;
}

/** Uploads the plates, archives them with the CLI, and returns a runner for further commands. */
export async function archivedCase(
  suite: ServerSuite,
  plates: FixturePlate[],
  objects: (p: FixturePlate) => GroundTruth = (p) => plateObjects(p, { manyFiles: 20 }),
  /** Keys uploaded in parts of this size (a multipart ETag), not by a single PUT. */
  multipart: { keys: Set<string>; partSize: number } = { keys: new Set(), partSize: 0 },
): Promise<ArchivedCase> {
  const live = await suite.server.newBucket('live');
  const cold = await suite.server.newBucket('cold');
  const truth = new Map<string, GroundTruth>();
  for (const p of plates) {
    const objs = objects(p);
    truth.set(p.plateId, objs);
    const single = new Map([...objs].filter(([k]) => !multipart.keys.has(k)));
    await uploadAll(suite.client, live, single);
    for (const [k, v] of objs)
      if (multipart.keys.has(k)) await uploadInParts(suite.client, live, k, v, multipart.partSize);
  }
  const dir = await mkdtemp(join(suite.work, 'case-'));
  const csv = await writePlatesCsv(plates, dir);
  const csvs = new Map<string, string>();
  const run = async (cmd: string, extra: string[] = [], only?: FixturePlate[]) => {
    let file = csv;
    if (only) {
      const name = only.map((p) => p.plateId).join('+');
      if (!csvs.has(name))
        csvs.set(name, await writePlatesCsv(only, await mkdtemp(join(dir, 'csv-'))));
      file = csvs.get(name)!;
    }
    return runCli(
      [
        cmd,
        ...plateArgs({ csv: file, live, cold }),
        ...(cmd === 'archive' ? ['--tmpdir', dir] : []),
        ...extra,
      ],
      serverEnv(suite.server),
    );
  };
  const r = await run('archive');
  if (r.code !== 0) throw new Error(`archive failed (${r.code}): ${r.stderr}\n${r.stdout}`);
  return { live, cold, dir, csv, truth, run };
}

export async function uploadInParts(
  client: S3Client,
  bucket: string,
  key: string,
  data: Buffer,
  partSize: number,
): Promise<string> {
  const { UploadId } = await client.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
  );
  const parts: { ETag: string; PartNumber: number }[] = [];
  for (let i = 0; i * partSize < data.length; i++) {
    const { ETag } = await client.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        PartNumber: i + 1,
        Body: data.subarray(i * partSize, (i + 1) * partSize),
      }),
    );
    parts.push({ ETag: ETag!, PartNumber: i + 1 });
  }
  const r = await client.send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      UploadId,
      MultipartUpload: { Parts: parts },
    }),
  );
  return r.ETag!.replace(/"/g, '');
}

/** Moves every cold object of the plates (tarballs, .md5, .etag) to a storage class in place. */
export async function moveCold(
  client: S3Client,
  cold: string,
  plates: FixturePlate[],
  storageClass: StorageClass,
): Promise<string[]> {
  const moved: string[] = [];
  for (const p of plates) {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: cold, Prefix: `${coldDir}${tagOf(p)}_` }),
    );
    for (const o of page.Contents ?? []) {
      if (!/\.(tar\.gz|tar|md5|etag)$/.test(o.Key!)) continue;
      await client.send(
        new CopyObjectCommand({
          Bucket: cold,
          Key: o.Key!,
          CopySource: `${cold}/${encodeURIComponent(o.Key!)}`,
          StorageClass: storageClass,
          MetadataDirective: 'COPY',
        }),
      );
      moved.push(o.Key!);
    }
  }
  return moved;
}

export async function restoreHeader(
  client: S3Client,
  bucket: string,
  key: string,
): Promise<string | undefined> {
  return (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).Restore;
}

/** The --json output's plate lines, by plate id (they come in the order plates finish). */
export function plateLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((o) => o.type === 'plate')
    .sort((a, b) => String(a.plateId).localeCompare(String(b.plateId)));
}
