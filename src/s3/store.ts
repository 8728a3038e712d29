import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  RestoreObjectCommand,
  type S3Client,
  type Tier,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { setMaxListeners } from 'node:events';
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
}

/** How S3 answered a RestoreObject. */
export type RestoreAnswer =
  'started' | 'already-restored' | 'in-progress' | 'expedited-unavailable';

export interface ObjectInfo {
  key: string;
  size: number;
  /** Without quotes. */
  etag: string;
  lastModified: Date;
  storageClass?: string;
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
  ) {
    // Every request in flight listens on the signal; dozens at once is normal, not a leak.
    setMaxListeners(0, signal);
  }

  /** The same store with requests tied to another signal (a plate's own, or cleanup's). */
  withSignal(signal: AbortSignal): S3Store {
    return new S3Store(this.client, signal);
  }

  private opts(): { abortSignal: AbortSignal } {
    return { abortSignal: this.signal };
  }

  async headBucket(bucket: string): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: bucket }), this.opts());
  }

  /** Every object under the prefix, page by page (at most 1000 keys a page). */
  async *list(bucket: string, prefix: string): AsyncGenerator<ObjectInfo> {
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
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
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async listAll(bucket: string, prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    for await (const o of this.list(bucket, prefix)) out.push(o);
    return out;
  }

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    try {
      const r = await this.client.send(
        new HeadObjectCommand({ Bucket: bucket, Key: key }),
        this.opts(),
      );
      return {
        key,
        size: r.ContentLength ?? 0,
        etag: unquoteEtag(r.ETag),
        lastModified: r.LastModified ?? new Date(0),
        ...(r.StorageClass ? { storageClass: r.StorageClass } : {}),
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
    opts: { ifMatch?: string; start?: number } = {},
  ): Promise<{ body: AsyncIterable<Uint8Array>; encryption?: string }> {
    const r = await this.client.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: key,
        ...(opts.ifMatch ? { IfMatch: `"${opts.ifMatch}"` } : {}),
        ...(opts.start ? { Range: `bytes=${opts.start}-` } : {}),
      }),
      this.opts(),
    );
    const body = r.Body as AsyncIterable<Uint8Array> | undefined;
    return {
      body: body ?? (async function* () {})(),
      ...(r.ServerSideEncryption ? { encryption: r.ServerSideEncryption } : {}),
    };
  }

  async getBuffer(bucket: string, key: string): Promise<Buffer | undefined> {
    try {
      const { body } = await this.get(bucket, key);
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(Buffer.from(c));
      return Buffer.concat(chunks);
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
   * earlier attempt whose response was lost before the SDK retried.
   */
  async put(
    bucket: string,
    key: string,
    body: Buffer | string,
    opts: { contentMd5?: Buffer; ifNoneMatch?: boolean; contentType?: string } = {},
  ): Promise<void> {
    try {
      await this.putOnce(bucket, key, body, opts);
    } catch (err) {
      if (!opts.ifNoneMatch || httpStatus(err) !== 412) throw err;
      const there = await this.getBuffer(bucket, key);
      if (!there || !there.equals(Buffer.isBuffer(body) ? body : Buffer.from(body))) throw err;
    }
  }

  private async putOnce(
    bucket: string,
    key: string,
    body: Buffer | string,
    opts: { contentMd5?: Buffer; ifNoneMatch?: boolean; contentType?: string } = {},
  ): Promise<void> {
    const cmd = new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: body,
      ...(opts.contentMd5 ? { ContentMD5: opts.contentMd5.toString('base64') } : {}),
      ...(opts.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
      ...(opts.contentType ? { ContentType: opts.contentType } : {}),
    });
    if (opts.contentMd5) unsignedPayload(cmd);
    await this.client.send(cmd, this.opts());
  }

  async createMultipart(bucket: string, key: string): Promise<string> {
    const r = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
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
  ): Promise<void> {
    await this.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts },
        ...(opts.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
      }),
      this.opts(),
    );
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

  /** HeadObject with the restore and archive fields; undefined when the key does not exist. */
  async headArchive(bucket: string, key: string): Promise<ArchiveHead | undefined> {
    try {
      const r = await this.client.send(
        new HeadObjectCommand({ Bucket: bucket, Key: key }),
        this.opts(),
      );
      return {
        key,
        size: r.ContentLength ?? 0,
        etag: unquoteEtag(r.ETag),
        lastModified: r.LastModified ?? new Date(0),
        ...(r.StorageClass ? { storageClass: r.StorageClass } : {}),
        ...(r.Restore ? { restore: r.Restore } : {}),
        ...(r.ArchiveStatus ? { archiveStatus: r.ArchiveStatus } : {}),
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
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

  /** One DeleteObjects call (at most 1000 keys); per-key errors are returned, not thrown. */
  async deleteBatch(
    bucket: string,
    objects: { key: string; etag?: string }[],
  ): Promise<{ deleted: string[]; errors: { key: string; code: string; message: string }[] }> {
    const r = await this.client.send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: {
          Objects: objects.map((o) => ({ Key: o.key, ...(o.etag ? { ETag: `"${o.etag}"` } : {}) })),
          Quiet: false,
        },
      }),
      this.opts(),
    );
    return {
      deleted: (r.Deleted ?? []).flatMap((d) => (d.Key !== undefined ? [d.Key] : [])),
      errors: (r.Errors ?? []).map((e) => ({
        key: e.Key ?? '',
        code: e.Code ?? 'Error',
        message: e.Message ?? '',
      })),
    };
  }
}
