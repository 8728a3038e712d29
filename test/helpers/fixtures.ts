// Synthetic plates uploaded by a test: the bytes it put are the ground truth every check uses.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';

export const PROJECT = '2013_Gustafsdottir_PLOSONE';
export const BATCH = 'BBBC022';

export interface FixturePlate {
  plateId: string;
  plateIdFull: string;
}

/** The key → bytes of everything a test uploaded, folder markers included (empty, key ends in /). */
export type GroundTruth = Map<string, Buffer>;

export const PLATE_A: FixturePlate = {
  plateId: 'BR00092655',
  plateIdFull: 'BR00092655__2017-12-10T12_48_16-Measurement 1',
};
export const PLATE_B: FixturePlate = { plateId: '2058', plateIdFull: '2058' };
/** Siblings of plate B whose ids start with "2058": never part of plate B. */
export const SIBLINGS: FixturePlate[] = [
  { plateId: '20586', plateIdFull: '20586' },
  { plateId: '2058-old', plateIdFull: '2058-old' },
];

export function sourcePrefixes(p: FixturePlate): string[] {
  return [
    `projects/${PROJECT}/${BATCH}/images/${p.plateIdFull}/`,
    `projects/${PROJECT}/${BATCH}/illum/${p.plateId}/`,
    `projects/${PROJECT}/workspace/analysis/${BATCH}/${p.plateId}/`,
    `projects/${PROJECT}/workspace/backend/${BATCH}/${p.plateId}/`,
  ];
}

/** Image-like bytes: 16-bit noise over a smooth background, so gzip works but not too well. */
export function imageLike(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 1 < size; i += 2) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt16LE((1000 + ((i >> 7) & 255) * 8 + ((x >>> 0) & 63)) & 0xffff, i);
  }
  return b;
}

/**
 * Plate A holds every awkward case of the archive issue; plate B is small; the siblings of B
 * hold files in all four of their own sources.
 */
export function plateObjects(
  p: FixturePlate,
  opts: { manyFiles?: number; bigFile?: number } = {},
): GroundTruth {
  const [images, illum, analysis, backend] = sourcePrefixes(p) as [string, string, string, string];
  const m: GroundTruth = new Map();
  let seed = p.plateId.length * 7919;
  const put = (key: string, data: Buffer) => m.set(key, data);
  put(`${images}r01c01f01p01-ch1sk1fk1fl1.tiff`, imageLike(20_000, ++seed));
  put(`${images}r01c01f01p01-ch2sk1fk1fl1.tiff`, imageLike(33_333, ++seed));
  put(`${images}Index.idx.xml`, Buffer.from(`<plate id="${p.plateId}"/>\n`));
  put(`${illum}${p.plateId}_IllumDNA.npy`, imageLike(4_096, ++seed));
  put(`${analysis}A01-1/Cells.csv`, Buffer.from('ImageNumber,ObjectNumber\n1,1\n1,2\n'.repeat(50)));
  put(`${backend}${p.plateId}.sqlite`, imageLike(50_000, ++seed));
  if (p === PLATE_A) {
    const many = opts.manyFiles ?? 1005;
    for (let i = 0; i < many; i++) {
      put(`${images}many/f${String(i).padStart(5, '0')}.tif`, Buffer.from(`small file ${i}\n`));
    }
    put(`${images}empty.txt`, Buffer.alloc(0));
    put(`${images}big.bin`, randomBytes(opts.bigFile ?? 9 * 1024 * 1024));
    put(`${images}${'long_name_'.repeat(12)}end.tiff`, imageLike(1_000, ++seed));
    put(`${images}nested/deeper/Ünïcødé µm 顕微鏡.tif`, Buffer.from('non-ascii\n'));
    put(`${images}a+b&c=d.csv`, Buffer.from('plus ampersand equals\n'));
    put(`${images}sub/`, Buffer.alloc(0)); // folder marker
    put(`${images}sub/inside.txt`, Buffer.from('inside a marked folder\n'));
    put(`${analysis}A01-1/Nuclei.csv`, Buffer.from('x\n'.repeat(1000)));
  }
  return m;
}

export async function uploadAll(
  client: S3Client,
  bucket: string,
  objects: GroundTruth,
  concurrency = 16,
): Promise<void> {
  const entries = [...objects];
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const [key, body] = entries[next++]!;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

export function md5hex(b: Buffer): string {
  return createHash('md5').update(b).digest('hex');
}

/** What the plate's normalized listing must be, built here from the ground truth alone. */
export function expectedListing(objects: GroundTruth): string {
  const lines = [...objects]
    .filter(([key]) => !key.endsWith('/'))
    .map(([key, data]) => Buffer.from(`${key.slice('projects/'.length)}\t${data.length}\n`));
  return Buffer.concat(lines.sort(Buffer.compare)).toString('utf8');
}

/** Uploads the plates' objects and their siblings' (SIBLINGS) to `bucket`; returns all of them. */
export async function uploadPlates(
  client: S3Client,
  bucket: string,
  plates: FixturePlate[],
  objects: (p: FixturePlate) => GroundTruth = (p) => plateObjects(p),
): Promise<GroundTruth> {
  const truth: GroundTruth = new Map();
  for (const p of [...plates, ...SIBLINGS]) {
    const o = objects(p);
    for (const [k, v] of o) truth.set(k, v);
    await uploadAll(client, bucket, o);
  }
  return truth;
}

export async function writePlatesCsv(plates: FixturePlate[], dir?: string): Promise<string> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), 'imgbackup-csv-')));
  const file = join(d, 'plates.csv');
  const q = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  await writeFile(
    file,
    `plate_id,plate_id_full\n${plates.map((p) => `${q(p.plateId)},${q(p.plateIdFull)}`).join('\n')}\n`,
  );
  return file;
}

/** Every regular file under dir, as path relative to dir → bytes. */
export async function readTree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const full = join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
    out.set(relative(dir, full), await readFile(full));
  }
  return out;
}

/** A plate large enough that archiving it takes well over a second (to interrupt or watch). */
export const BIG_PLATE: FixturePlate = { plateId: 'big-plate', plateIdFull: 'big-plate' };

/** BIG_PLATE's objects: one 60 MiB image-like file and a small backend file. */
export function bigPlateObjects(): GroundTruth {
  const [images, , , backend] = sourcePrefixes(BIG_PLATE) as [string, string, string, string];
  return new Map([
    [`${images}huge.tiff`, imageLike(60 * 1024 * 1024, 42)],
    [`${backend}big-plate.sqlite`, imageLike(10_000, 43)],
  ]);
}
