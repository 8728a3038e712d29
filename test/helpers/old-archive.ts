// The outputs the old bash script (aws_backup.sh) wrote for a plate, rebuilt by a test from the
// bytes it uploaded: a downloaded tree, tar -czf, md5sum, an `aws s3 ls` listing, and the
// normalized listings cut at the first space (the old script's bug).
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { BATCH, PROJECT, type FixturePlate, type GroundTruth } from './fixtures.js';

const put = (client: S3Client, Bucket: string, Key: string, Body: Buffer | string) =>
  client.send(new PutObjectCommand({ Bucket, Key, Body }));

/**
 * The listing machine's clock is in UTC+05:45 (Nepal): `aws s3 ls` prints local time, and
 * imgbackup cannot know which zone it was.
 */
const LISTED_TZ_OFFSET_MS = (5 * 60 + 45) * 60_000;

/** An `aws s3 ls --recursive` line of an object, as the listing machine printed it. */
export async function lsLine(client: S3Client, bucket: string, key: string): Promise<string> {
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  const local = new Date(head.LastModified!.getTime() + LISTED_TZ_OFFSET_MS);
  const time = local.toISOString().slice(0, 19).replace('T', ' ');
  return `${time} ${String(head.ContentLength).padStart(10, ' ')} ${key}\n`;
}

/**
 * Writes plate `p`'s old-script archive of `objects` (keys under p's four sources, already in
 * live; folder markers included, as `aws s3 ls` shows them) into live and cold. `rewrites`:
 * keys written again (other bytes) after `aws s3 ls`, before the listings were uploaded, as
 * during the script's download and tar: the tarballs hold the bytes listed, not these.
 */
export async function writeOldArchive(
  client: S3Client,
  o: {
    live: string;
    cold: string;
    work: string;
    plate: FixturePlate;
    objects: GroundTruth;
    rewrites?: GroundTruth;
  },
): Promise<void> {
  const { plate: p, objects } = o;
  const ls = (await Promise.all([...objects.keys()].map((k) => lsLine(client, o.live, k)))).join(
    '',
  );
  const T = `${PROJECT}_${BATCH}_${p.plateId}`;
  const coldKey = (name: string) => `imaging_analysis/${PROJECT}/plates/${T}_${name}`;
  const dir = await mkdtemp(join(o.work, 'old-'));
  for (const [k, v] of objects) {
    const f = join(dir, T, k.slice('projects/'.length));
    if (k.endsWith('/')) await mkdir(f, { recursive: true });
    else {
      await mkdir(join(f, '..'), { recursive: true });
      await writeFile(f, v);
    }
  }
  const groups: Record<string, string[]> = {
    images_illum_analysis: [
      `${T}/${PROJECT}/${BATCH}/images/${p.plateIdFull}`,
      `${T}/${PROJECT}/${BATCH}/illum/${p.plateId}`,
      `${T}/${PROJECT}/workspace/analysis/${BATCH}/${p.plateId}`,
    ],
    backend: [`${T}/${PROJECT}/workspace/backend/${BATCH}/${p.plateId}`],
  };
  for (const [g, dirs] of Object.entries(groups)) {
    for (const d of dirs) await mkdir(join(dir, d), { recursive: true });
    const name = `${T}_${g}.tar.gz`;
    execFileSync('tar', ['-czf', name, ...dirs], { cwd: dir });
    const key = coldKey(`${g}.tar.gz`);
    await put(client, o.cold, key, await readFile(join(dir, name)));
    await put(client, o.cold, coldKey(`${g}.md5`), execFileSync('md5sum', [name], { cwd: dir }));
    const head = await client.send(new HeadObjectCommand({ Bucket: o.cold, Key: key }));
    await put(client, o.cold, coldKey(`${g}.etag`), `${head.ETag!.replace(/"/g, '')}\n`);
  }
  const files = [...objects].filter(([k]) => !k.endsWith('/'));
  const cut = Buffer.concat(
    files
      .map(([k, v]) => Buffer.from(`${k.slice('projects/'.length).split(' ')[0]}\t${v.length}\n`))
      .sort(Buffer.compare),
  );
  if (o.rewrites?.size) {
    // A Last-Modified in a later second than the one listed (S3's are whole seconds).
    await new Promise((r) => setTimeout(r, 1100));
    for (const [k, v] of o.rewrites) await put(client, o.live, k, v);
  }
  const backup = `projects/${PROJECT}/workspace/backup/${T}`;
  await put(client, o.live, `${backup}_file_listing_s3.txt`, cut);
  await put(client, o.live, `${backup}_file_listing_tar.txt`, cut);
  await put(client, o.live, `${backup}_delete_s3.sh`, 'aws s3 rm --recursive "s3://x/y"\n');
  await put(client, o.cold, coldKey('file_listing_untrimmed_s3.txt'), ls);
}
