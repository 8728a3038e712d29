// A small HTTP proxy between the tool and a test S3 server that injects the faults real S3 and
// real networks produce: 503 SlowDown, 500 InternalError, connection resets, and GET bodies cut
// off half way. Faults are drawn from a seeded generator, so a failing run can be replayed.
import {
  createServer,
  request,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault = 'slowdown' | 'internal' | 'reset' | 'cut';

export interface FaultProxy {
  endpoint: string;
  /** Every RestoreObject that reached the proxy: `bucket/key` and the XML body the SDK sent. */
  restores: { path: string; body: string }[];
  /** Faults injected so far, by kind. */
  injected: Record<Fault, number>;
  /** Answers dropped after the server gave them (dropAnswer). */
  dropped: number;
  requests: number;
  /** Bytes of the answers' bodies to requests `count` matched (what a client read through). */
  counted: number;
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  /** Probability that a request gets a fault (0..1). */
  rate: number;
  faults?: Fault[];
  seed?: number;
  /** Requests whose method and path match are never faulted (e.g. the test's own setup). */
  spare?: (req: IncomingMessage) => boolean;
  /** Sees every request first and may hold it (e.g. to change the server's state under it). */
  onRequest?: (req: IncomingMessage) => void | Promise<void>;
  /** A fixed S3 error answer for matching requests (e.g. an object in an archive tier). */
  answer?: (req: IncomingMessage) => { status: number; code: string; message: string } | undefined;
  /**
   * Reads the whole body of matching requests first and hands it to `hook`, which may change the
   * server's state before the request is forwarded (e.g. overwrite a key a DeleteObjects names).
   */
  inspectBody?: {
    match: (req: IncomingMessage) => boolean;
    hook: (req: IncomingMessage, body: Buffer) => void | Promise<void>;
  };
  /** Counts the body bytes of the server's answers to matching requests (see `counted`). */
  count?: (req: IncomingMessage) => boolean;
  /**
   * Forwards matching requests, lets the server answer, and then drops the connection without
   * passing the answer on: the request landed, the client saw a network error (and retries).
   */
  dropAnswer?: (req: IncomingMessage) => boolean;
  /**
   * Forwards matching requests at once but holds the server's answer until the promise settles:
   * the request has taken effect, and the client does not know it yet.
   */
  holdAnswer?: (req: IncomingMessage) => Promise<void> | undefined;
  /** Rewrites the server's answer to matching requests (e.g. a listing page's XML). */
  rewrite?: (req: IncomingMessage) => ((body: string) => string) | undefined;
  /**
   * Emulates Intelligent-Tiering's archive tiers, which no test server has, for these
   * `bucket/key` paths: listed as INTELLIGENT_TIERING, HEAD says `x-amz-archive-status`, GET
   * answers 403 InvalidObjectState, until a RestoreObject reaches the key (answered 202 here);
   * HEAD then says `ongoing-request="true"` for `headsInProgress` HEADs (default 1) and after
   * that the object is back in a readable tier (RestoreObject: 403 InvalidObjectState).
   */
  tiering?: {
    archived: Set<string>;
    status: 'ARCHIVE_ACCESS' | 'DEEP_ARCHIVE_ACCESS';
    headsInProgress?: number;
  };
}

/** `bucket/key` of a path-style request, and whether it is a RestoreObject. */
function s3Target(req: IncomingMessage): {
  path: string;
  restore: boolean;
  /** The bucket a ListObjectsV2 lists; undefined for other requests. */
  list?: string;
} {
  const u = new URL(req.url ?? '/', 'http://proxy');
  const path = decodeURIComponent(u.pathname.slice(1));
  const bucket = path.replace(/\/$/, '');
  const listing =
    req.method === 'GET' && !bucket.includes('/') && u.searchParams.get('list-type') === '2';
  return {
    path,
    restore: req.method === 'POST' && u.searchParams.has('restore'),
    ...(listing ? { list: bucket } : {}),
  };
}

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function s3Error(res: ServerResponse, status: number, code: string, message: string) {
  const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId></Error>`;
  res.writeHead(status, {
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

export async function startFaultProxy(
  target: string,
  opts: FaultProxyOptions,
): Promise<FaultProxy> {
  const up = new URL(target);
  const random = rng(opts.seed ?? 42);
  const kinds = opts.faults ?? ['slowdown', 'internal', 'reset', 'cut'];
  const injected: Record<Fault, number> = { slowdown: 0, internal: 0, reset: 0, cut: 0 };
  const state = { requests: 0, counted: 0, dropped: 0 };
  const restores: FaultProxy['restores'] = [];
  /** Per tiered key after its RestoreObject: HEADs left that see the restore in progress. */
  const restoring = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const t = s3Target(req);
    if (t.restore) {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        restores.push({ path: t.path, body: body.toString('utf8') });
        Promise.resolve(opts.onRequest?.(req)).then(
          () => handle(req, res, body),
          () => req.socket.destroy(),
        );
      });
      return;
    }
    if (opts.inspectBody?.match(req)) {
      const inspect = opts.inspectBody;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        Promise.resolve(inspect.hook(req, body)).then(
          () => handle(req, res, body),
          () => req.socket.destroy(),
        );
      });
      return;
    }
    const held = opts.onRequest?.(req);
    if (held) {
      req.pause();
      held.then(
        () => handle(req, res),
        () => req.socket.destroy(),
      );
    } else {
      handle(req, res);
    }
  });
  function tieredRestore(path: string, res: ServerResponse) {
    state.requests += 1;
    if (restoring.has(path))
      return s3Error(res, 409, 'RestoreAlreadyInProgress', 'Object restore is already in progress');
    restoring.set(path, opts.tiering!.headsInProgress ?? 1);
    res.writeHead(202, { 'content-length': '0' });
    res.end();
  }
  /** For a tiered key still archived: the headers its HEAD gets, or a GET's 403. */
  function tiered(req: IncomingMessage, res: ServerResponse): Record<string, string> | undefined {
    const tiering = opts.tiering;
    const { path } = s3Target(req);
    if (!tiering?.archived.has(path)) return undefined;
    if (req.method === 'GET') {
      s3Error(
        res,
        403,
        'InvalidObjectState',
        "The operation is not valid for the object's access tier",
      );
      return {};
    }
    if (req.method !== 'HEAD') return undefined;
    const left = restoring.get(path);
    if (left === 0) {
      tiering.archived.delete(path);
      return { 'x-amz-storage-class': 'INTELLIGENT_TIERING' };
    }
    const headers: Record<string, string> = {
      'x-amz-storage-class': 'INTELLIGENT_TIERING',
      'x-amz-archive-status': tiering.status,
    };
    if (left !== undefined) {
      restoring.set(path, left - 1);
      headers['x-amz-restore'] = 'ongoing-request="true"';
    }
    return headers;
  }
  /** A listing with the tiered keys' storage class as S3 lists Intelligent-Tiering objects. */
  function tieredListing(bucket: string, xml: string): string {
    const tiering = opts.tiering!;
    return xml.replace(/<Contents>[\s\S]*?<\/Contents>/g, (c) => {
      const key = (/<Key>([^<]*)<\/Key>/.exec(c) ?? [])[1];
      const known =
        key !== undefined &&
        (tiering.archived.has(`${bucket}/${key}`) || restoring.has(`${bucket}/${key}`));
      return known
        ? c.replace(
            /<StorageClass>[^<]*<\/StorageClass>/,
            '<StorageClass>INTELLIGENT_TIERING</StorageClass>',
          )
        : c;
    });
  }
  function handle(req: IncomingMessage, res: ServerResponse, body?: Buffer) {
    const fixed = opts.answer?.(req);
    if (fixed) {
      state.requests += 1;
      if (body) return s3Error(res, fixed.status, fixed.code, fixed.message);
      req.resume();
      req.on('end', () => s3Error(res, fixed.status, fixed.code, fixed.message));
      return;
    }
    const t = s3Target(req);
    if (t.restore && opts.tiering?.archived.has(t.path)) return tieredRestore(t.path, res);
    state.requests += 1;
    const extraHeaders = tiered(req, res);
    if (extraHeaders && req.method === 'GET') return;
    const listed = s3Target(req).list;
    const rewrite =
      opts.rewrite?.(req) ??
      (opts.tiering && listed !== undefined
        ? (xml: string) => tieredListing(listed, xml)
        : undefined);
    let fault: Fault | undefined;
    if (!opts.spare?.(req) && random() < opts.rate) {
      fault = kinds[Math.floor(random() * kinds.length)];
      // Only a GET has a body to cut; other requests get another fault instead.
      if (fault === 'cut' && req.method !== 'GET') fault = 'reset';
    }
    if (fault === 'slowdown' || fault === 'internal' || fault === 'reset') {
      injected[fault] += 1;
      req.resume();
      req.on('end', () => {
        if (fault === 'reset') req.socket.destroy();
        else if (fault === 'slowdown')
          s3Error(res, 503, 'SlowDown', 'Please reduce your request rate.');
        else
          s3Error(res, 500, 'InternalError', 'We encountered an internal error. Please try again.');
      });
      return;
    }
    const fwd = request(
      {
        host: up.hostname,
        port: up.port,
        method: req.method,
        path: req.url,
        headers: req.headers, // Host kept as signed by the client
      },
      (upRes) => {
        const held = opts.holdAnswer?.(req);
        if (held) {
          upRes.pause();
          held.then(
            () => respond(upRes),
            () => res.socket?.destroy(),
          );
        } else respond(upRes);
      },
    );
    function respond(upRes: IncomingMessage) {
      if (opts.dropAnswer?.(req)) {
        state.dropped += 1;
        upRes.resume();
        upRes.on('end', () => res.socket?.destroy());
        return;
      }
      if (rewrite) {
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          const text = Buffer.from(rewrite(Buffer.concat(chunks).toString('utf8')));
          const headers = { ...upRes.headers, 'content-length': String(text.length) };
          delete headers['transfer-encoding'];
          res.writeHead(upRes.statusCode ?? 502, headers);
          res.end(text);
        });
        return;
      }
      res.writeHead(upRes.statusCode ?? 502, { ...upRes.headers, ...extraHeaders });
      const length = Number(upRes.headers['content-length'] ?? 0);
      if (fault === 'cut' && length > 1) {
        injected.cut += 1;
        let sent = 0;
        upRes.on('data', (chunk: Buffer) => {
          const room = Math.floor(length / 2) - sent;
          if (room > 0) res.write(chunk.subarray(0, room));
          sent += chunk.length;
          if (sent >= length / 2) {
            upRes.destroy();
            res.socket?.destroy();
          }
        });
        return;
      }
      if (opts.count?.(req)) upRes.on('data', (c: Buffer) => (state.counted += c.length));
      upRes.pipe(res);
    }
    fwd.on('error', () => res.socket?.destroy());
    // A client that dies mid-request (killed, reset) drops the upstream side too, as a real
    // network would; left open, the server would wait for the rest of the body forever.
    res.on('close', () => {
      if (!res.writableFinished) fwd.destroy();
    });
    if (body) fwd.end(body);
    else req.pipe(fwd);
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    injected,
    restores,
    get requests() {
      return state.requests;
    },
    get counted() {
      return state.counted;
    },
    get dropped() {
      return state.dropped;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
