// Bench figure for restore-request --prefix (issue 14): N GLACIER keys on a local moto, the
// built CLI requesting all of them; prints requests per second and the CLI's peak RSS.
// Usage: node dist/bench/restore-requests.js ENDPOINT [N]   (moto: scripts/moto-start.sh DIR)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

const endpoint = process.argv[2];
const n = Number(process.argv[3] ?? 10_000);
if (!endpoint) throw new Error('usage: restore-requests.js ENDPOINT [N]');
const env = { AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench', AWS_REGION: 'us-east-1' };
const client = new S3Client({
  endpoint,
  region: env.AWS_REGION,
  forcePathStyle: true,
  credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
});
const bucket = `bench-restore-${Date.now()}`;
await client.send(new CreateBucketCommand({ Bucket: bucket }));
let next = 0;
const put = async () => {
  while (next < n) {
    const i = next++;
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `data/${String(i).padStart(6, '0')}.tif`,
        Body: `object ${i}\n`,
        StorageClass: 'GLACIER',
      }),
    );
  }
};
await Promise.all(Array.from({ length: 32 }, put));
const bin = fileURLToPath(new URL('../../bin/imgbackup.js', import.meta.url));
const started = Date.now();
const r = spawnSync(
  '/usr/bin/time',
  [
    '-f',
    'maxrss_kb=%M',
    process.execPath,
    bin,
    'restore-request',
    '--prefix',
    `s3://${bucket}/data/`,
    '--json',
  ],
  { env: { ...process.env, ...env, AWS_ENDPOINT_URL: endpoint }, encoding: 'utf8' },
);
const seconds = (Date.now() - started) / 1000;
const summary = r.stdout.split('\n').filter((l) => l.includes('"requested"')).length;
console.log(
  JSON.stringify({
    keys: n,
    seconds,
    requestsPerSecond: Math.round(n / seconds),
    exit: r.status,
    plateLinesRequested: summary,
    rss: /maxrss_kb=(\d+)/.exec(r.stderr)?.[1],
  }),
);
if (r.status !== 0) console.error(r.stderr.slice(-2000));
