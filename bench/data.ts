// Synthetic plates with the byte mix of a Cell Painting plate (SPEC.md "Sizing"): ~78 % 16-bit
// TIFF-like images that gzip to about two thirds, a few illumination arrays, ~10 % CellProfiler
// CSV measurements (very compressible) and one SQLite-like backend (~8 %). A handful of distinct
// base buffers is generated once; each file is a slice of one at its own offset behind a header
// unique to the file, so no two files are equal and generation costs a memcpy per file.
import { createHash, randomFillSync } from 'node:crypto';
import { gzipSync } from 'node:zlib';

export const MB = 1_000_000;

export type Category = 'images' | 'illum' | 'csv' | 'backend';

export interface PlanFile {
  key: string;
  size: number;
  category: Category;
  /** Deterministic per file: picks the base buffer and the offset. */
  seed: number;
}

export interface PlateIds {
  plateId: string;
  plateIdFull: string;
}

/** Small deterministic PRNG (mulberry32): sizes and names are the same on every run. */
export function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Share of a plate's bytes per category. */
export const MIX: Record<Category, number> = {
  images: 0.78,
  illum: 0.04,
  csv: 0.1,
  backend: 0.08,
};

export const FILE_MIN = 1 * MB;
export const FILE_MAX = 8 * MB;
const SQLITE_PAGE = 4096;
const CHANNELS = ['DNA', 'ER', 'RNA', 'AGP', 'Mito'];
const CSV_TABLES = ['Cells', 'Cytoplasm', 'Nuclei'];

function sizesUpTo(total: number, rnd: () => number, min = FILE_MIN, max = FILE_MAX): number[] {
  const out: number[] = [];
  let left = total;
  while (left > 0) {
    let s = Math.round(min + rnd() * (max - min));
    if (left - s < min / 2) s = left; // the remainder joins the last file
    s = Math.min(s, left);
    out.push(s);
    left -= s;
  }
  return out;
}

const pad = (n: number, w: number) => String(n).padStart(w, '0');
const WELL_ROWS = 'ABCDEFGHIJKLMNOP';

/** The keys and sizes of one plate under the SPEC's four sources. */
export function planPlate(
  project: string,
  batch: string,
  plate: PlateIds,
  plateBytes: number,
  seed: number,
  /** Image sizes, [min, max] bytes (`--image-mb`). */
  images: [number, number] = [FILE_MIN, FILE_MAX],
): PlanFile[] {
  const rnd = prng(seed);
  const files: PlanFile[] = [];
  const P = `projects/${project}`;
  const backendBytes = Math.max(
    SQLITE_PAGE,
    Math.round((plateBytes * MIX.backend) / SQLITE_PAGE) * SQLITE_PAGE,
  );
  const csvBytes = Math.round(plateBytes * MIX.csv);
  const illumBytes = Math.round(plateBytes * MIX.illum);
  const imageBytes = plateBytes - backendBytes - csvBytes - illumBytes;
  const nextSeed = () => Math.floor(rnd() * 2 ** 31);

  // Images: r01c01f01p01-ch1sk1fk1fl1.tiff, five channels per site.
  let i = 0;
  for (const size of sizesUpTo(imageBytes, rnd, images[0], images[1])) {
    const ch = (i % 5) + 1;
    const site = Math.floor(i / 5);
    const field = (site % 9) + 1;
    const well = Math.floor(site / 9);
    const row = (well % 16) + 1;
    const col = Math.floor(well / 16) + 1;
    files.push({
      key: `${P}/${batch}/images/${plate.plateIdFull}/Images/r${pad(row, 2)}c${pad(col, 2)}f${pad(field, 2)}p01-ch${ch}sk1fk1fl1.tiff`,
      size,
      category: 'images',
      seed: nextSeed(),
    });
    i += 1;
  }
  // Illumination functions: one array per channel.
  const illumEach = Math.floor(illumBytes / CHANNELS.length);
  CHANNELS.forEach((c, k) => {
    files.push({
      key: `${P}/${batch}/illum/${plate.plateId}/${plate.plateId}_Illum${c}.npy`,
      size: k === CHANNELS.length - 1 ? illumBytes - illumEach * k : illumEach,
      category: 'illum',
      seed: nextSeed(),
    });
  });
  // Measurements: analysis/<plate>-<well>-<site>/{Cells,Cytoplasm,Nuclei}.csv
  i = 0;
  for (const size of sizesUpTo(csvBytes, rnd)) {
    const table = CSV_TABLES[i % CSV_TABLES.length]!;
    const w = Math.floor(i / CSV_TABLES.length);
    const well = `${WELL_ROWS[w % 16]!}${pad(Math.floor(w / 16) + 1, 2)}`;
    files.push({
      key: `${P}/workspace/analysis/${batch}/${plate.plateId}/analysis/${plate.plateId}-${well}-1/${table}.csv`,
      size,
      category: 'csv',
      seed: nextSeed(),
    });
    i += 1;
  }
  files.push({
    key: `${P}/workspace/backend/${batch}/${plate.plateId}/${plate.plateId}.sqlite`,
    size: backendBytes,
    category: 'backend',
    seed: nextSeed(),
  });
  return files;
}

/** The distinct buffers every file is cut from. */
export interface Bases {
  images: Buffer[];
  illum: Buffer;
  csv: Buffer[];
  sqlitePages: Buffer;
}

/**
 * A 16-bit image: a dim background with 3 bits of noise, and ~55 % covered by cells (discs) whose
 * pixels carry 12 bits of noise. zlib makes ~0.66 of it at level 6 and ~0.68 at level 1, and,
 * like real images, level 6 is several times slower than level 1 on it.
 */
function imageBase(w: number, h: number, rnd: () => number): Buffer {
  const n = w * h;
  const noise = new Uint16Array(n);
  randomFillSync(noise);
  const cell = new Uint8Array(n);
  let covered = 0;
  while (covered < 0.55 * n) {
    const cx = rnd() * w;
    const cy = rnd() * h;
    const r = 15 + rnd() * 25;
    const y0 = Math.max(0, Math.floor(cy - r));
    const y1 = Math.min(h, Math.ceil(cy + r));
    const x0 = Math.max(0, Math.floor(cx - r));
    const x1 = Math.min(w, Math.ceil(cx + r));
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const i = y * w + x;
        if (cell[i] === 0 && (x - cx) ** 2 + (y - cy) ** 2 < r * r) {
          cell[i] = 1;
          covered += 1;
        }
      }
    }
  }
  const px = new Uint16Array(n);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const bg = 400 + ((x + y) >> 6);
      px[i] = cell[i] ? bg + 1500 + (noise[i]! & 4095) : bg + (noise[i]! & 7);
    }
  }
  return Buffer.from(px.buffer);
}

/** A smooth float32 illumination function (values ~1–1.5), as numpy would save it. */
function illumBase(bytes: number): Buffer {
  const n = Math.ceil(bytes / 4);
  const w = 2048;
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = (i % w) - w / 2;
    const y = Math.floor(i / w) - 600;
    f[i] = 1 + 0.5 * Math.exp(-(x * x + y * y) / (2 * 700 * 700));
  }
  return Buffer.from(f.buffer);
}

const CSV_HEADER =
  'ImageNumber,ObjectNumber,Metadata_Plate,Metadata_Well,Metadata_Site,AreaShape_Area,' +
  'AreaShape_Center_X,AreaShape_Center_Y,AreaShape_Eccentricity,AreaShape_Solidity,' +
  'AreaShape_EulerNumber,Children_Cytoplasm_Count,Intensity_MeanIntensity_DNA,' +
  'Intensity_MeanIntensity_ER,Intensity_IntegratedIntensity_RNA,Texture_Contrast_AGP_3_00,' +
  'Granularity_1_Mito,Neighbors_NumberOfNeighbors_Adjacent,Location_MaxIntensity_Z_DNA,' +
  'Parent_Nuclei\n';

/** CellProfiler-like measurements: ids, repeated metadata, low-precision numbers. */
function csvBase(bytes: number, rnd: () => number): Buffer {
  const parts: string[] = [CSV_HEADER];
  let len = CSV_HEADER.length;
  let img = 1;
  let obj = 1;
  while (len < bytes) {
    if (rnd() < 0.004) {
      img += 1;
      obj = 1;
    }
    const well = `${WELL_ROWS[img % 16]!}${pad((img % 24) + 1, 2)}`;
    const row =
      `${img},${obj},BR00000000,${well},${(img % 9) + 1},${Math.floor(300 + rnd() * 3000)},` +
      `${(rnd() * 1080).toFixed(1)},${(rnd() * 1080).toFixed(1)},${rnd().toFixed(3)},` +
      `${(0.8 + rnd() * 0.2).toFixed(3)},1,1,${(rnd() * 0.1).toFixed(4)},` +
      `${(rnd() * 0.1).toFixed(4)},${(rnd() * 200).toFixed(2)},${(rnd() * 5).toFixed(2)},` +
      `${(rnd() * 0.5).toFixed(3)},${Math.floor(rnd() * 8)},0.0,${obj}\n`;
    parts.push(row);
    len += row.length;
    obj += 1;
  }
  return Buffer.from(parts.join(''), 'latin1');
}

/** SQLite-like pages: a b-tree leaf header, float64 measurements and short text cells. */
function sqliteBase(pages: number, rnd: () => number, text: Buffer): Buffer {
  const buf = Buffer.alloc(pages * SQLITE_PAGE);
  for (let p = 0; p < pages; p++) {
    const o = p * SQLITE_PAGE;
    buf[o] = 0x0d;
    buf.writeUInt16BE(40, o + 3);
    let at = o + 8 + 80; // room for the cell pointer array
    while (at < o + SQLITE_PAGE - 64) {
      for (let k = 0; k < 4; k++) {
        buf.writeDoubleBE(Math.round(rnd() * 100000) / 100, at);
        at += 8;
      }
      const t = Math.floor(rnd() * (text.length - 32));
      at += text.copy(buf, at, t, t + 24);
    }
  }
  return buf;
}

export function makeBases(maxImageBytes = FILE_MAX): Bases {
  const rnd = prng(12345);
  const csv = [csvBase(9 * MB, rnd), csvBase(9 * MB, rnd)];
  // 2048 px wide, tall enough for the largest image plus room for offsets (2304 rows, 9.4 MB,
  // for the default 8 MB).
  const rows = Math.max(2304, Math.ceil((maxImageBytes * 1.18) / (2 * 2048)));
  return {
    images: [0, 1, 2, 3].map(() => imageBase(2048, rows, rnd)),
    illum: illumBase(9 * MB),
    csv,
    sqlitePages: sqliteBase(2048, rnd, csv[0]!),
  };
}

function uniqueHeader(f: PlanFile, len: number): Buffer {
  const h = Buffer.alloc(len);
  createHash('sha256').update(f.key).digest().copy(h, 0);
  return h;
}

/** The bytes of one file, deterministic in its plan. */
export function fileBytes(bases: Bases, f: PlanFile): Buffer {
  const rnd = prng(f.seed);
  switch (f.category) {
    case 'images': {
      const base = bases.images[f.seed % bases.images.length]!;
      const head = Buffer.alloc(64);
      head.write('II', 0, 'latin1');
      head.writeUInt16LE(42, 2);
      head.writeUInt32LE(64, 4);
      uniqueHeader(f, 32).copy(head, 16);
      const body = Math.max(0, f.size - head.length);
      const off = 2 * Math.floor((rnd() * (base.length - body)) / 2);
      return Buffer.concat([head, base.subarray(off, off + body)], f.size);
    }
    case 'illum': {
      const head = Buffer.alloc(128, 0x20);
      head.write("\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, ", 0, 'latin1');
      head[127] = 0x0a;
      const body = Math.max(0, f.size - head.length);
      const off = 4 * Math.floor((rnd() * (bases.illum.length - body)) / 4);
      return Buffer.concat([head, bases.illum.subarray(off, off + body)], f.size);
    }
    case 'csv': {
      const base = bases.csv[f.seed % bases.csv.length]!;
      const head = Buffer.from(CSV_HEADER, 'latin1');
      const body = Math.max(0, f.size - head.length);
      let off = Math.floor(rnd() * (base.length - body));
      const nl = base.indexOf(10, off);
      if (nl >= 0 && nl + 1 + body <= base.length) off = nl + 1;
      return Buffer.concat([head, base.subarray(off, off + body)], f.size);
    }
    case 'backend': {
      const out = Buffer.alloc(f.size);
      const pages = bases.sqlitePages;
      const n = pages.length / SQLITE_PAGE;
      const start = Math.floor(rnd() * n);
      for (let p = 0; p * SQLITE_PAGE < f.size; p++) {
        const src = ((start + p * 7) % n) * SQLITE_PAGE;
        pages.copy(out, p * SQLITE_PAGE, src, src + SQLITE_PAGE);
        if (p * SQLITE_PAGE + 8 <= f.size) out.writeUInt32BE(p + 1, p * SQLITE_PAGE + 4);
      }
      out.write('SQLite format 3\0', 0, 'latin1');
      uniqueHeader(f, 32).copy(out, 32);
      return out;
    }
  }
}

export interface CategoryStats {
  files: number;
  bytes: number;
  /** zlib output / input on one sample file, at level 1 and level 6. */
  gzipRatioL1: number;
  gzipRatioL6: number;
}

/** Per category: count, bytes, and zlib ratios measured on one sample file of it. */
export function mixStats(bases: Bases, files: PlanFile[]): Record<Category, CategoryStats> {
  const out = {} as Record<Category, CategoryStats>;
  for (const cat of ['images', 'illum', 'csv', 'backend'] as Category[]) {
    const of = files.filter((f) => f.category === cat);
    const sample = of.reduce<PlanFile | undefined>(
      (a, f) => (!a || f.size > a.size ? f : a),
      undefined,
    );
    let l1 = 0;
    let l6 = 0;
    if (sample) {
      const b = fileBytes(bases, sample).subarray(0, 4 * MB);
      l1 = gzipSync(b, { level: 1 }).length / b.length;
      l6 = gzipSync(b, { level: 6 }).length / b.length;
    }
    out[cat] = {
      files: of.length,
      bytes: of.reduce((n, f) => n + f.size, 0),
      gzipRatioL1: l1,
      gzipRatioL6: l6,
    };
  }
  return out;
}
