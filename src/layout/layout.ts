/**
 * Pure mapping from a plate to every S3 key imgbackup reads or writes (SPEC.md, "Sources" and
 * "Outputs"). Nothing here does I/O, so every rule is unit-tested with exact strings.
 */

export interface PlateRef {
  plateId: string;
  plateIdFull: string;
}

export interface LayoutOptions {
  projectName: string;
  batchId: string;
  bucket: string;
  coldBucket: string;
  /** false: plain `.tar` tarballs (archive --no-compress). Default: `.tar.gz`. */
  compressed?: boolean;
}

export type SourceName = 'images' | 'illum' | 'analysis' | 'backend';

export interface Source {
  name: SourceName;
  /** Always ends with '/', so plate 2058 never sweeps in 20586/ (old-script bug). */
  prefix: string;
}

export type TarballName = 'images_illum_analysis' | 'backend';

export interface TarballLayout {
  name: TarballName;
  /** Base name, as md5sum prints it in the .md5 file. */
  fileName: string;
  key: string;
  md5Key: string;
  etagKey: string;
  /**
   * Live bucket, beside the listings (not lifecycled to a cold tier, so partial restores can read
   * it at once). Not in the old script's outputs nor in archives made before it: optional.
   */
  indexKey: string;
  sources: Source[];
}

export interface PlateLayout {
  plate: PlateRef;
  compressed: boolean;
  tag: string;
  bucket: string;
  coldBucket: string;
  sources: Source[];
  tarballs: TarballLayout[];
  /** Cold bucket. */
  untrimmedListingKey: string;
  /** Live bucket. */
  s3ListingKey: string;
  tarListingKey: string;
  deleteScriptKey: string;
  /**
   * Not in the old script's outputs (so optional when reading): each archived key's size and
   * ETag at archive time, so a same-size overwrite after the archive is still detected.
   */
  etagListingKey: string;
  /** Exists while archive writes a plate's outputs: a partial archive with it is ours to redo. */
  inProgressKey: string;
  verifiedKey: string;
  /**
   * The plate's lease (archive, verify, delete, restore hold it while they work): written only
   * with conditional PUTs, and kept when released so its generation survives.
   */
  leaseKey: string;
}

const PROJECTS = 'projects/';

export function plateLayout(opts: LayoutOptions, plate: PlateRef): PlateLayout {
  const P = opts.projectName;
  const B = opts.batchId;
  const tag = `${P}_${B}_${plate.plateId}`;
  const images: Source = {
    name: 'images',
    prefix: `${PROJECTS}${P}/${B}/images/${plate.plateIdFull}/`,
  };
  const illum: Source = { name: 'illum', prefix: `${PROJECTS}${P}/${B}/illum/${plate.plateId}/` };
  const analysis: Source = {
    name: 'analysis',
    prefix: `${PROJECTS}${P}/workspace/analysis/${B}/${plate.plateId}/`,
  };
  const backend: Source = {
    name: 'backend',
    prefix: `${PROJECTS}${P}/workspace/backend/${B}/${plate.plateId}/`,
  };
  const coldDir = `imaging_analysis/${P}/plates/`;
  const backupDir = `${PROJECTS}${P}/workspace/backup/`;
  const tarball = (name: TarballName, sources: Source[]): TarballLayout => {
    // SPEC: for tarball X.tar.gz the sums are X.md5 and X.etag (not X.tar.gz.md5).
    const base = `${coldDir}${tag}_${name}`;
    const ext = opts.compressed === false ? '.tar' : '.tar.gz';
    return {
      name,
      fileName: `${tag}_${name}${ext}`,
      key: `${base}${ext}`,
      md5Key: `${base}.md5`,
      etagKey: `${base}.etag`,
      indexKey: `${backupDir}${tag}_${name}.index`,
      sources,
    };
  };
  return {
    plate,
    compressed: opts.compressed !== false,
    tag,
    bucket: opts.bucket,
    coldBucket: opts.coldBucket,
    sources: [images, illum, analysis, backend],
    tarballs: [
      tarball('images_illum_analysis', [images, illum, analysis]),
      tarball('backend', [backend]),
    ],
    untrimmedListingKey: `${coldDir}${tag}_file_listing_untrimmed_s3.txt`,
    s3ListingKey: `${backupDir}${tag}_file_listing_s3.txt`,
    tarListingKey: `${backupDir}${tag}_file_listing_tar.txt`,
    deleteScriptKey: `${backupDir}${tag}_delete_s3.sh`,
    etagListingKey: `${backupDir}${tag}_file_etags_s3.txt`,
    inProgressKey: `${backupDir}${tag}_archive_in_progress.json`,
    verifiedKey: `${backupDir}${tag}_verified.json`,
    leaseKey: `${backupDir}${tag}.lease`,
  };
}

/** Every key archive writes for a plate, in the order it writes them (the delete script last). */
export function outputKeys(layout: PlateLayout): { bucket: string; key: string }[] {
  const cold = (key: string) => ({ bucket: layout.coldBucket, key });
  const live = (key: string) => ({ bucket: layout.bucket, key });
  return [
    ...layout.tarballs.flatMap((t) => [cold(t.key), cold(t.md5Key), cold(t.etagKey)]),
    cold(layout.untrimmedListingKey),
    live(layout.s3ListingKey),
    live(layout.tarListingKey),
    live(layout.deleteScriptKey),
  ];
}

/**
 * Outputs only imgbackup writes (old archives lack them): never what makes an archive complete,
 * but one left without the rest makes it partial. Written before the delete script.
 */
export function optionalOutputKeys(layout: PlateLayout): { bucket: string; key: string }[] {
  return [
    { bucket: layout.bucket, key: layout.etagListingKey },
    ...layout.tarballs.map((t) => ({ bucket: layout.bucket, key: t.indexKey })),
  ];
}

/** The listing path of a key: the key without its leading `projects/` (SPEC.md). */
export function listingPath(key: string): string {
  if (!key.startsWith(PROJECTS)) throw new Error(`key outside projects/: ${key}`);
  return key.slice(PROJECTS.length);
}

/** The tar member name of a key: its leading `projects/` replaced by `T/`. */
export function tarPath(tag: string, key: string): string {
  return `${tag}/${listingPath(key)}`;
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Why a source key cannot be archived safely, or undefined if it can. A key is refused when its
 * tar path could land outside its folder on extraction (`.`/`..` segments, empty segments that
 * tar folds) or could not be written as one listing line (control characters).
 */
export function unsafeKeyReason(source: Source, key: string): string | undefined {
  if (!key.startsWith(source.prefix)) return `is not under ${source.prefix}`;
  if (CONTROL.test(key)) return 'contains a control character';
  const rest = key.slice(source.prefix.length);
  const segments = (rest.endsWith('/') ? rest.slice(0, -1) : rest).split('/');
  if (rest === '') return undefined; // the folder marker of the source itself
  for (const s of segments) {
    if (s === '..' || s === '.') return `has a "${s}" path segment`;
    if (s === '') return 'has an empty path segment (//)';
  }
  return undefined;
}

/**
 * Why a name (plate id, project, batch) cannot be used in a key, or undefined. Names become one
 * path segment, so a "/" or ".." would move a plate's prefixes onto other data.
 */
export function unsafeNameReason(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (name !== name.trim()) return 'has leading or trailing whitespace';
  if (name.includes('/')) return 'contains "/"';
  if (name.includes('..')) return 'contains ".."';
  if (name === '.') return 'is "."';
  if (CONTROL.test(name)) return 'contains a control character';
  return undefined;
}

/**
 * Pairs of keys that `tar x` cannot both bring back: a file `…/a` and a key below `…/a/` (a file
 * or the folder marker `…/a/`). GNU tar replaces the file with the folder and exits 0, so the
 * file would be lost silently on restore. Each pair is [file, key below it], sorted by byte order.
 */
export function fileFolderClashes(keys: Iterable<string>): [string, string][] {
  const all = [...keys];
  const files = new Set(all.filter((k) => !k.endsWith('/')));
  const out: [string, string][] = [];
  for (const k of all) {
    for (let i = k.indexOf('/'); i >= 0 && i < k.length - 1; i = k.indexOf('/', i + 1)) {
      const parent = k.slice(0, i);
      if (files.has(parent)) out.push([parent, k]);
    }
    if (k.endsWith('/') && files.has(k.slice(0, -1))) out.push([k.slice(0, -1), k]);
  }
  const bytes = (p: [string, string]) => Buffer.from(`${p[0]}\n${p[1]}`);
  return out.sort((a, b) => Buffer.compare(bytes(a), bytes(b)));
}
