// `npm run demo`: the whole runbook on a local S3 server with two sample plates, as a user sees it.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { MB } from '../bench/data.js';
import { DEMO_PLATE_BYTES, demoObjects } from './demo-data.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PROJECT = '2013_Gustafsdottir_PLOSONE';
const BATCH = 'BBBC022';
const PLATES = [
  { plateId: 'BR00092655', plateIdFull: 'BR00092655__2017-12-10T12_48_16-Measurement 1' },
  { plateId: '20585', plateIdFull: '20585' },
];

/** Runs the CLI as a child; async, since the S3 server lives in this process's event loop. */
function step(title: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const shown = args.map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a)).join(' ');
  process.stdout.write(`\n# ${title}\n$ imgbackup ${shown}\n`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/imgbackup.js'), ...args], {
      env: { ...process.env, ...env },
      stdio: 'inherit',
    });
    child.on('close', (code) => resolve(code ?? 1));
  });
}

async function main(): Promise<number> {
  // As bin/imgbackup.js does for the CLI: the SDK's notice about its future Node support is not
  // the demo's subject (the SDK reads this when a client is made).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const dir = await mkdtemp(join(tmpdir(), 'imgbackup-demo-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: join(dir, 's3'),
  });
  const { port } = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    const env = {
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: endpoint,
    };
    const client = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    for (const b of ['imaging-platform', 'imaging-platform-cold']) {
      await client.send(new CreateBucketCommand({ Bucket: b }));
    }
    for (const [Key, Body] of demoObjects(PROJECT, BATCH, PLATES)) {
      await client.send(new PutObjectCommand({ Bucket: 'imaging-platform', Key, Body }));
    }
    process.stdout.write(
      `imgbackup demo: a local S3 server at ${endpoint} holds two sample plates ` +
        `(${PLATES.map((p) => p.plateId).join(', ')}, ${DEMO_PLATE_BYTES / MB} MB each, image-like) in s3://imaging-platform; the cold bucket is ` +
        `s3://imaging-platform-cold. The plates are listed in plates.example.csv.\n`,
    );
    const common = [
      '--plates',
      join(ROOT, 'plates.example.csv'),
      '--project-name',
      PROJECT,
      '--batch-id',
      BATCH,
    ];
    const steps: [string, string[]][] = [
      [
        '1. archive: stream each plate into tarballs in the cold bucket',
        ['archive', ...common, '--tmpdir', dir, '--max-procs', '2'],
      ],
      [
        '2. verify --deep: prove each archive complete, byte for byte',
        ['verify', ...common, '--deep'],
      ],
      [
        '3. collect-deletes: the delete script and plan of the verified plates',
        ['collect-deletes', ...common, '--out', join(dir, 'delete_s3.sh')],
      ],
      [
        '4. delete --dry-run: what delete would remove (nothing is removed)',
        ['delete', ...common, '--dry-run', '--quiet'],
      ],
    ];
    for (const [title, args] of steps) {
      const code = await step(title, args, env);
      if (code !== 0) {
        process.stderr.write(`demo: step failed with exit code ${code}\n`);
        return code;
      }
    }
    process.stdout.write('\nDemo finished: both plates archived, verified and ready to delete.\n');
    return 0;
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
