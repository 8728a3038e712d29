// `npm run demo`: the whole runbook on a local S3 server with two sample plates, as a user sees it.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PROJECT = '2013_Gustafsdottir_PLOSONE';
const BATCH = 'BBBC022';
const PLATES = [
  { id: 'BR00092655', full: 'BR00092655__2017-12-10T12_48_16-Measurement 1' },
  { id: '20585', full: '20585' },
];

/** Image-like bytes: a smooth 16-bit background with noise, so gzip has realistic work. */
function image(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed || 1;
  for (let i = 0; i + 1 < size; i += 2) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    b.writeUInt16LE(1000 + ((i >> 9) & 255) * 4 + (x & 63), i);
  }
  return b;
}

function sampleObjects(p: { id: string; full: string }): [string, Buffer][] {
  const objs: [string, Buffer][] = [];
  for (let w = 0; w < 12; w++) {
    for (let ch = 1; ch <= 5; ch++) {
      objs.push([
        `projects/${PROJECT}/${BATCH}/images/${p.full}/r01c${String(w + 1).padStart(2, '0')}f01p01-ch${ch}sk1fk1fl1.tiff`,
        image(64 * 1024, w * 10 + ch),
      ]);
    }
  }
  objs.push([
    `projects/${PROJECT}/${BATCH}/illum/${p.id}/${p.id}_IllumDNA.npy`,
    image(32 * 1024, 99),
  ]);
  objs.push([
    `projects/${PROJECT}/workspace/analysis/${BATCH}/${p.id}/analysis/A01-1/Cells.csv`,
    Buffer.from('ImageNumber,ObjectNumber,AreaShape_Area\n1,1,402\n'.repeat(400)),
  ]);
  objs.push([
    `projects/${PROJECT}/workspace/backend/${BATCH}/${p.id}/${p.id}.sqlite`,
    image(256 * 1024, 7),
  ]);
  return objs;
}

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
    for (const p of PLATES) {
      for (const [Key, Body] of sampleObjects(p)) {
        await client.send(new PutObjectCommand({ Bucket: 'imaging-platform', Key, Body }));
      }
    }
    process.stdout.write(
      `imgbackup demo: a local S3 server at ${endpoint} holds two sample plates ` +
        `(${PLATES.map((p) => p.id).join(', ')}) in s3://imaging-platform; the cold bucket is ` +
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
