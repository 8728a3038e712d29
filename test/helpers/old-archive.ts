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
 * Writes plate `p`'s old-script archive of `objects` (keys under p's four sources; folder
 * markers included, as `aws s3 ls` shows them) into live and cold.
 */
export async function writeOldArchive(
  client: S3Client,
  o: { live: string; cold: string; work: string; plate: FixturePlate; objects: GroundTruth },
): Promise<void> {
  const { plate: p, objects } = o;
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
  const backup = `projects/${PROJECT}/workspace/backup/${T}`;
  await put(client, o.live, `${backup}_file_listing_s3.txt`, cut);
  await put(client, o.live, `${backup}_file_listing_tar.txt`, cut);
  await put(client, o.live, `${backup}_delete_s3.sh`, 'aws s3 rm --recursive "s3://x/y"\n');
  const ls = [...objects]
    .map(([k, v]) => `2017-12-11 09:30:00 ${String(v.length).padStart(10, ' ')} ${k}\n`)
    .join('');
  await put(client, o.cold, coldKey('file_listing_untrimmed_s3.txt'), ls);
}
