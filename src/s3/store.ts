import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  RestoreObjectCommand,
  type S3Client,
  type Tier,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { PlateError } from '../errors.js';
import { unquoteEtag } from '../integrity/etag.js';

/** SigV4's header for the payload's SHA-256, or this value to leave the payload out. */
const PAYLOAD_HASH_HEADER = 'x-amz-content-sha256';
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

/**
 * Spares a SHA-256 pass over every uploaded byte (the SDK's signer hashes Buffer bodies): the
 * request carries a Content-MD5, which S3 checks against the bytes it receives and which the
 * signature covers, so the body is still bound to what we hashed.
 */
function unsignedPayload<C extends PutObjectCommand | UploadPartCommand>(cmd: C): C {
  // Both commands' stacks take the same build-step middleware; one type serves for both.
  const stack = cmd.middlewareStack as PutObjectCommand['middlewareStack'];
  stack.add(
    (next) => (args) => {
      const headers = (args.request as { headers?: Record<string, string> }).headers;
      // A payload hash set by someone else (aws-chunked uploads name their own) is left alone.
      const set =
        headers && Object.keys(headers).some((h) => h.toLowerCase() === PAYLOAD_HASH_HEADER);
      if (headers && !set) headers[PAYLOAD_HASH_HEADER] = UNSIGNED_PAYLOAD;
      return next(args);
    },
    { step: 'build', name: 'imgbackupUnsignedPayload' },
  );
  return cmd;
}

/** What HeadObject says about an object's archive state (restore-request, restore-status). */
export interface ArchiveHead extends ObjectInfo {
  /** The raw `x-amz-restore` header: absent, `ongoing-request="true"`, or with an expiry-date. */
  restore?: string;
  /** Intelligent-Tiering only: ARCHIVE_ACCESS or DEEP_ARCHIVE_ACCESS. */
  archiveStatus?: string;
  /** The lease generation that wrote it (GENERATION_META); absent on objects written without. */
  generation?: number;
}

/** How S3 answered a RestoreObject. */
export type RestoreAnswer =
  | 'started'
  | 'already-restored'
  | 'in-progress'
  | 'expedited-unavailable'
  /** 403 InvalidObjectState: the object is in no archive class, so it is readable already. */
  | 'not-archived';

export interface ObjectInfo {
  key: string;
  size: number;
  /** Without quotes. */
  etag: string;
  lastModified: Date;
  storageClass?: string;
  /**
   * On a bucket with versioning enabled or suspended: the version listed (`null` for one written
   * while versioning was suspended). Absent on an unversioned bucket.
   */
  versionId?: string;
  /**
   * Only from a listing that asked for it (OptionalObjectAttributes RestoreStatus) and only for
   * an object with a restore in progress or done; stores that ignore the ask never send it.
   */
  restoreStatus?: { inProgress: boolean; expiry?: Date };
}

/** What a listing says of an object's restore, when it says anything. */
function listedRestore(r: { IsRestoreInProgress?: boolean; RestoreExpiryDate?: Date } | undefined) {
  if (!r) return {};
  return {
    restoreStatus: {
      inProgress: r.IsRestoreInProgress === true,
      ...(r.RestoreExpiryDate ? { expiry: r.RestoreExpiryDate } : {}),
    },
  };
}

/** One key of a DeleteObjects call; with `versionId`, exactly that version is removed. */
export interface DeleteTarget {
  key: string;
  etag?: string;
  versionId?: string;
}

/** How an If-Match names an ETag: quoted (AWS's documented form) or bare (radosgw's). */
export type EtagForm = 'quoted' | 'bare';

/** GetBucketVersioning's Status; undefined for a bucket that never had versioning. */
export type Versioning = 'Enabled' | 'Suspended' | undefined;

/** Answered for a key a DeleteObjects reply names in neither Deleted nor Errors. */
export const NOT_IN_ANSWER = 'NotInAnswer';

/**
 * A listing page that says more follow but gives no way to ask for them: stopping there would be
 * a silent subset, and a plate proven or deleted from a subset loses data.
 */
export class TruncatedListingError extends PlateError {
  override name = 'TruncatedListingError';
  constructor(bucket: string, prefix: string, what: string) {
    super(
      `s3://${bucket}/${prefix}: the store said the listing is truncated but gave no ${what}; refusing a partial listing (check the endpoint, or retry)`,
    );
  }
}

/**
 * The claim a plate's writes are made under (its lease): a writer whose claim is lost must not
 * send another write, and every object it writes records the claim's generation.
 */
export interface Fence {
  /** Recorded on each object written; undefined: written as they are (restored user objects). */
  readonly generation?: number;
  /** Throws (LeaseLostError) once the claim is lost. */
  assertHeld(): void;
}

/** User metadata (x-amz-meta-imgbackup-generation): the lease generation that wrote an object. */
export const GENERATION_META = 'imgbackup-generation';

/** The generation an object's metadata records, or undefined (old archives, no lease). */
export function generationOf(metadata: Record<string, string> | undefined): number | undefined {
  const v = metadata?.[GENERATION_META];
  if (v === undefined || !/^[1-9][0-9]*$/.test(v)) return undefined;
  return Number(v);
}

/** How long cleanup (aborting uploads) may take after the run's own signal has fired. */
export const CLEANUP_TIMEOUT_MS = 15_000;

interface S3ErrorShape {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

export function s3ErrorCode(err: unknown): string {
  const e = err as S3ErrorShape;
  return e?.Code ?? e?.name ?? e?.code ?? 'Error';
}

export function httpStatus(err: unknown): number | undefined {
  return (err as S3ErrorShape)?.$metadata?.httpStatusCode;
}

export function isNotFound(err: unknown): boolean {
  const code = s3ErrorCode(err);
  return code === 'NotFound' || code === 'NoSuchKey' || httpStatus(err) === 404;
}

export function isAbort(err: unknown): boolean {
  const name = (err as Error)?.name;
  return name === 'AbortError' || name === 'RequestAbortedError';
}

/**
 * The few S3 operations imgbackup needs. Every request carries an AbortSignal, so Ctrl-C or a
 * failed plate stops requests in flight instead of waiting for them.
 */
export class S3Store {
  constructor(
    readonly client: S3Client,
    readonly signal: AbortSignal,
    /** Each bucket's versioning state, asked once per run and shared by every plate's store. */
    private readonly versionings = new Map<string, Promise<Versioning>>(),
    /** A plate's claim on it: checked before every write, its generation put on every object. */
    readonly fence?: Fence,
  ) {
    // Every request in flight listens on the signal; dozens at once is normal, not a leak.
    setMaxListeners(0, signal);
  }

  /** The same store with requests tied to another signal (a plate's own, or cleanup's). */
  withSignal(signal: AbortSignal): S3Store {
    return new S3Store(this.client, signal, this.versionings, this.fence);
  }

  /** The same store with every write checked against `fence` first and stamped with it. */
  withFence(fence: Fence | undefined): S3Store {
    return new S3Store(this.client, this.signal, this.versionings, fence);
  }

  /** Called before each write: a fenced store whose claim is lost sends nothing more. */
  private beforeWrite(): Record<string, string> | undefined {
    if (!this.fence) return undefined;
    this.fence.assertHeld();
    const g = this.fence.generation;
    return g === undefined ? undefined : { [GENERATION_META]: String(g) };
  }

  /**
   * Whether the bucket keeps versions (asked once per run). On such a bucket a delete without a
   * version id only adds a delete marker, so listings carry version ids and deletes name them.
   */
  versioning(bucket: string): Promise<Versioning> {
    let v = this.versionings.get(bucket);
    if (!v) {
      v = this.client.send(new GetBucketVersioningCommand({ Bucket: bucket }), this.opts()).then(
        (r) => (r.Status === 'Enabled' || r.Status === 'Suspended' ? r.Status : undefined),
        (err: unknown) => {
          if (isAbort(err) || this.signal.aborted) throw err;
          throw new PlateError(
            `s3://${bucket}: GetBucketVersioning failed (${s3ErrorCode(err)}); imgbackup must know whether the bucket keeps versions (allow s3:GetBucketVersioning)`,
          );
        },
      );
      // A failed ask (an abort, a network error) is asked again next time, not remembered.
      v.catch(() => this.versionings.delete(bucket));
      this.versionings.set(bucket, v);
    }
    return v;
  }

  private opts(): { abortSignal: AbortSignal } {
    return { abortSignal: this.signal };
  }

  async headBucket(bucket: string): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: bucket }), this.opts());
  }

  /**
   * Every object under the prefix, page by page (at most 1000 keys a page). On a versioned bucket
   * each object's current version, with its version id (keys whose latest is a delete marker are
   * not there, as ListObjectsV2 would not show them).
   */
  async *list(
    bucket: string,
    prefix: string,
    /** Ask for each object's RestoreStatus too (restore-request / restore-status --sources). */
    opts: { restoreStatus?: boolean } = {},
  ): AsyncGenerator<ObjectInfo> {
    const optional = opts.restoreStatus
      ? { OptionalObjectAttributes: ['RestoreStatus' as const] }
      : {};
    if (await this.versioning(bucket)) {
      yield* this.listCurrentVersions(bucket, prefix, optional);
      return;
    }
    let token: string | undefined;
    for (;;) {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: prefix,
          ContinuationToken: token,
          ...optional,
        }),
        this.opts(),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield {
          key: o.Key,
          size: o.Size ?? 0,
          etag: unquoteEtag(o.ETag),
          lastModified: o.LastModified ?? new Date(0),
          ...(o.StorageClass ? { storageClass: o.StorageClass } : {}),
          ...listedRestore(o.RestoreStatus),
        };
      }
      if (!page.IsTruncated) return;
      if (!page.NextContinuationToken)
        throw new TruncatedListingError(bucket, prefix, 'NextContinuationToken');
      token = page.NextContinuationToken;
    }
  }

  private async *listCurrentVersions(
    bucket: string,
    prefix: string,
    optional: { OptionalObjectAttributes?: 'RestoreStatus'[] },
  ): AsyncGenerator<ObjectInfo> {
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    for (;;) {
      const page = await this.client.send(
        new ListObjectVersionsCommand({
          Bucket: bucket,
          Prefix: prefix,
          KeyMarker: keyMarker,
          VersionIdMarker: versionMarker,
          ...optional,
        }),
        this.opts(),
      );
      for (const v of page.Versions ?? []) {
        if (v.Key === undefined || !v.IsLatest) continue;
        yield {
          key: v.Key,
          size: v.Size ?? 0,
          etag: unquoteEtag(v.ETag),
          lastModified: v.LastModified ?? new Date(0),
          ...(v.StorageClass ? { storageClass: v.StorageClass } : {}),
          versionId: v.VersionId ?? 'null',
          ...listedRestore(v.RestoreStatus),
        };
      }
      if (!page.IsTruncated) return;
      if (!page.NextKeyMarker) throw new TruncatedListingError(bucket, prefix, 'NextKeyMarker');
      keyMarker = page.NextKeyMarker;
      versionMarker = page.NextVersionIdMarker;
    }
  }

  async listAll(
    bucket: string,
    prefix: string,
    opts: { restoreStatus?: boolean } = {},
  ): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    for await (const o of this.list(bucket, prefix, opts)) out.push(o);
    return out;
  }

  /**
   * The object (or with `versionId`, that version of it), with its restore and archive fields;
   * undefined if there is none.
   */
  async head(bucket: string, key: string, versionId?: string): Promise<ArchiveHead | undefined> {
    try {
      const r = await this.client.send(
        new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }),
        this.opts(),
      );
      // A version id naming a delete marker answers 405 (an error); a current delete marker, 404.
      return {
        key,
        size: r.ContentLength ?? 0,
        etag: unquoteEtag(r.ETag),
        lastModified: r.LastModified ?? new Date(0),
        ...(r.StorageClass ? { storageClass: r.StorageClass } : {}),
        ...(r.VersionId ? { versionId: r.VersionId } : {}),
        ...(r.Restore ? { restore: r.Restore } : {}),
        ...(r.ArchiveStatus ? { archiveStatus: r.ArchiveStatus } : {}),
        ...(generationOf(r.Metadata) !== undefined
          ? { generation: generationOf(r.Metadata)! }
          : {}),
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Whether a GET would answer InvalidObjectState: Glacier / Deep Archive without a finished
   * restore, or an Intelligent-Tiering archive tier.
   */
  async needsRestore(bucket: string, key: string): Promise<boolean> {
    const r = await this.client.send(
      new HeadObjectCommand({ Bucket: bucket, Key: key }),
      this.opts(),
    );
    const restored = (r.Restore ?? '').includes('ongoing-request="false"');
    if (r.ArchiveStatus) return !restored;
    return (r.StorageClass === 'GLACIER' || r.StorageClass === 'DEEP_ARCHIVE') && !restored;
  }

  /** A GET body; `ifMatch` makes S3 refuse (412) an object that changed since it was listed. */
  async get(
    bucket: string,
    key: string,
    /** `end`: the last byte wanted (inclusive, as Range counts); without it, to the end. */
    opts: { ifMatch?: string; start?: number; end?: number; versionId?: string } = {},
  ): Promise<{ body: AsyncIterable<Uint8Array>; encryption?: string; versionId?: string }> {
    const range =
      opts.end !== undefined
        ? `bytes=${opts.start ?? 0}-${opts.end}`
        : opts.start
          ? `bytes=${opts.start}-`
          : undefined;
    const r = await this.client.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: key,
        ...(opts.versionId ? { VersionId: opts.versionId } : {}),
        ...(opts.ifMatch ? { IfMatch: `"${opts.ifMatch}"` } : {}),
        ...(range ? { Range: range } : {}),
      }),
      this.opts(),
    );
    const body = r.Body as AsyncIterable<Uint8Array> | undefined;
    return {
      body: body ?? (async function* () {})(),
      ...(r.ServerSideEncryption ? { encryption: r.ServerSideEncryption } : {}),
      ...(r.VersionId ? { versionId: r.VersionId } : {}),
    };
  }

  async getBuffer(bucket: string, key: string): Promise<Buffer | undefined> {
    return (await this.getWhole(bucket, key))?.bytes;
  }

  /** The object's bytes and the version they are (one GET: the two cannot disagree). */
  private async getWhole(
    bucket: string,
    key: string,
  ): Promise<{ bytes: Buffer; versionId?: string } | undefined> {
    try {
      const { body, versionId } = await this.get(bucket, key);
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(Buffer.from(c));
      return { bytes: Buffer.concat(chunks), ...(versionId ? { versionId } : {}) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async getText(bucket: string, key: string): Promise<string | undefined> {
    return (await this.getBuffer(bucket, key))?.toString('utf8');
  }

  /**
   * A single PUT. `contentMd5` makes S3 refuse bytes that changed on the way (BadDigest). With
   * `ifNoneMatch`, a 412 for an object holding exactly these bytes is success: it is our own
   * earlier attempt whose response was lost before the SDK retried. Answers the version id the
   * PUT created on a versioned bucket (after such a retry, that of the bytes found).
   */
  async put(
    bucket: string,
    key: string,
    body: Buffer | string,
    opts: { contentMd5?: Buffer; ifNoneMatch?: boolean; contentType?: string } = {},
  ): Promise<{ versionId?: string }> {
    try {
      return await this.putOnce(bucket, key, body, opts);
    } catch (err) {
      if (!opts.ifNoneMatch || httpStatus(err) !== 412) throw err;
      const there = await this.getWhole(bucket, key);
      if (!there?.bytes.equals(Buffer.isBuffer(body) ? body : Buffer.from(body))) throw err;
      return there.versionId ? { versionId: there.versionId } : {};
    }
  }

  private async putOnce(
    bucket: string,
    key: string,
    body: Buffer | string,
    opts: { contentMd5?: Buffer; ifNoneMatch?: boolean; contentType?: string } = {},
  ): Promise<{ versionId?: string }> {
    const metadata = this.beforeWrite();
    const cmd = new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: body,
      ...(metadata ? { Metadata: metadata } : {}),
      ...(opts.contentMd5 ? { ContentMD5: opts.contentMd5.toString('base64') } : {}),
      ...(opts.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
      ...(opts.contentType ? { ContentType: opts.contentType } : {}),
    });
    if (opts.contentMd5) unsignedPayload(cmd);
    const r = await this.client.send(cmd, this.opts());
    return r.VersionId ? { versionId: r.VersionId } : {};
  }

  /**
   * A PUT that lands only if the key is absent (`ifNoneMatch`) or holds the object with ETag
   * `ifMatch` (named in `form`: quoted as AWS documents it, or bare, the only form radosgw
   * matches; the lease probe finds which). Answers the new ETag (without quotes); a condition
   * not met throws the store's 412. Never fenced: it is how a claim itself is written.
   */
  async putConditional(
    bucket: string,
    key: string,
    body: string,
    cond: { ifNoneMatch: true } | { ifMatch: string; form: EtagForm },
    contentType = 'application/json',
  ): Promise<{ etag: string; versionId?: string }> {
    const r = await this.client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: body,
        ContentType: contentType,
        ...('ifMatch' in cond
          ? { IfMatch: cond.form === 'quoted' ? `"${cond.ifMatch}"` : cond.ifMatch }
          : { IfNoneMatch: '*' }),
      }),
      this.opts(),
    );
    return { etag: unquoteEtag(r.ETag), ...(r.VersionId ? { versionId: r.VersionId } : {}) };
  }

  /** An object's text and ETag (without quotes), or undefined if there is none. */
  async getWithEtag(
    bucket: string,
    key: string,
  ): Promise<{ text: string; etag: string } | undefined> {
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key }),
        this.opts(),
      );
      const text = r.Body ? await r.Body.transformToString('utf8') : '';
      return { text, etag: unquoteEtag(r.ETag) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async createMultipart(bucket: string, key: string): Promise<string> {
    const metadata = this.beforeWrite();
    const r = await this.client.send(
      new CreateMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        ...(metadata ? { Metadata: metadata } : {}),
      }),
      this.opts(),
    );
    if (!r.UploadId) throw new Error(`s3://${bucket}/${key}: no UploadId in CreateMultipartUpload`);
    return r.UploadId;
  }

  async uploadPart(
    bucket: string,
    key: string,
    uploadId: string,
    partNumber: number,
    body: Buffer,
    md5: Buffer,
  ): Promise<string> {
    this.beforeWrite();
    const cmd = new UploadPartCommand({
      Bucket: bucket,
      Key: key,
      UploadId: uploadId,
      PartNumber: partNumber,
      Body: body,
      ContentMD5: md5.toString('base64'),
    });
    const r = await this.client.send(unsignedPayload(cmd), this.opts());
    if (!r.ETag) throw new Error(`s3://${bucket}/${key}: part ${partNumber} has no ETag`);
    return r.ETag;
  }

  async completeMultipart(
    bucket: string,
    key: string,
    uploadId: string,
    parts: { PartNumber: number; ETag: string }[],
    opts: { ifNoneMatch?: boolean } = {},
  ): Promise<{ versionId?: string }> {
    this.beforeWrite();
    const r = await this.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts },
        ...(opts.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
      }),
      this.opts(),
    );
    return r.VersionId ? { versionId: r.VersionId } : {};
  }

  /** Multipart uploads in progress whose key is exactly `key`. */
  async listUploads(bucket: string, key: string): Promise<string[]> {
    const r = await this.client.send(
      new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }),
      this.opts(),
    );
    return (r.Uploads ?? []).filter((u) => u.Key === key && u.UploadId).map((u) => u.UploadId!);
  }

  async abortMultipart(bucket: string, key: string, uploadId: string): Promise<void> {
    await this.client.send(
      new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
      this.opts(),
    );
  }

  /**
   * RestoreObject. `days` is for GLACIER / DEEP_ARCHIVE and must be left out for
   * Intelligent-Tiering's archive tiers (400 otherwise). The tier goes in GlacierJobParameters:
   * SDK v3's top-level Tier is the SELECT form and gets MalformedXML.
   */
  async restoreObject(
    bucket: string,
    key: string,
    opts: { tier: Tier; days?: number },
  ): Promise<RestoreAnswer> {
    try {
      const r = await this.client.send(
        new RestoreObjectCommand({
          Bucket: bucket,
          Key: key,
          RestoreRequest: {
            ...(opts.days !== undefined ? { Days: opts.days } : {}),
            GlacierJobParameters: { Tier: opts.tier },
          },
        }),
        this.opts(),
      );
      // 200: a restored copy exists already (its expiry is extended); 202: restore started
      return r.$metadata.httpStatusCode === 200 ? 'already-restored' : 'started';
    } catch (err) {
      const code = s3ErrorCode(err);
      if (code === 'RestoreAlreadyInProgress') return 'in-progress';
      if (code === 'GlacierExpeditedRetrievalNotAvailable') return 'expedited-unavailable';
      if (code === 'InvalidObjectState' && httpStatus(err) === 403) return 'not-archived';
      throw err;
    }
  }

  /** Bytes [start, end] (inclusive, as the Range header counts) of an object. */
  async getRange(
    bucket: string,
    key: string,
    start: number,
    end: number,
    opts: { ifMatch?: string } = {},
  ): Promise<AsyncIterable<Uint8Array>> {
    const r = await this.client.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: key,
        Range: `bytes=${start}-${end}`,
        ...(opts.ifMatch ? { IfMatch: `"${opts.ifMatch}"` } : {}),
      }),
      this.opts(),
    );
    return (r.Body as AsyncIterable<Uint8Array> | undefined) ?? (async function* () {})();
  }

  /**
   * One DeleteObjects call (at most 1000 keys). Per-key errors are returned, not thrown, and a key
   * the answer names in neither `Deleted` nor `Errors` is an error too (NOT_IN_ANSWER): nothing
   * is counted deleted that the store did not say it deleted. With a version id, exactly that
   * version is removed; without one, a versioned bucket only gets a delete marker.
   */
  async deleteBatch(
    bucket: string,
    objects: DeleteTarget[],
  ): Promise<{ deleted: string[]; errors: { key: string; code: string; message: string }[] }> {
    if (objects.length === 0) return { deleted: [], errors: [] };
    this.beforeWrite();
    const cmd = new DeleteObjectsCommand({
      Bucket: bucket,
      Delete: {
        Objects: objects.map((o) => ({
          Key: o.key,
          ...(o.versionId ? { VersionId: o.versionId } : {}),
          ...(o.etag ? { ETag: `"${o.etag}"` } : {}),
        })),
        Quiet: false,
      },
    });
    const r = await this.client.send(withContentMd5(cmd), this.opts());
    const id = (key: string | undefined, versionId: string | undefined) =>
      `${key}\u0000${versionId ?? ''}`;
    // An answer for an unversioned request may still carry a version id (a delete marker's).
    const answered = (
      list: { Key?: string | undefined; VersionId?: string | undefined }[] | undefined,
    ) => new Set((list ?? []).flatMap((d) => [id(d.Key, d.VersionId), id(d.Key, undefined)]));
    const deletedIds = answered(r.Deleted);
    const errorIds = answered(r.Errors);
    const deleted: string[] = [];
    const errors = (r.Errors ?? []).map((e) => ({
      key: e.Key ?? '',
      code: e.Code ?? 'Error',
      message: e.Message ?? '',
    }));
    for (const o of objects) {
      const me = id(o.key, o.versionId);
      // An error entry may leave its version id out; it still answers for the key.
      if (errorIds.has(me) || errorIds.has(id(o.key, undefined))) continue;
      if (deletedIds.has(me)) deleted.push(o.key);
      else
        errors.push({
          key: o.key,
          code: NOT_IN_ANSWER,
          message: 'the DeleteObjects answer names it in neither Deleted nor Errors',
        });
    }
    return { deleted, errors };
  }
}

/**
 * DeleteObjects must carry an integrity header; the SDK now sends a CRC32, which some
 * S3-compatible stores refuse (MissingContentMD5). A Content-MD5 of the body as well is what
 * every store takes, AWS included.
 */
function withContentMd5(cmd: DeleteObjectsCommand): DeleteObjectsCommand {
  cmd.middlewareStack.add(
    (next) => (args) => {
      const req = args.request as { headers?: Record<string, string>; body?: unknown };
      const body = req.body;
      const has =
        req.headers && Object.keys(req.headers).some((h) => h.toLowerCase() === 'content-md5');
      if (req.headers && !has && (typeof body === 'string' || body instanceof Uint8Array)) {
        req.headers['content-md5'] = createHash('md5').update(body).digest('base64');
      }
      return next(args);
    },
    { step: 'build', name: 'imgbackupDeleteContentMd5' },
  );
  return cmd;
}
