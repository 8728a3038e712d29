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
  /** Faults injected so far, by kind. */
  injected: Record<Fault, number>;
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
  /** Rewrites the server's answer to matching requests (e.g. a listing page's XML). */
  rewrite?: (req: IncomingMessage) => ((body: string) => string) | undefined;
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
  const state = { requests: 0, counted: 0 };
  const server: Server = createServer((req, res) => {
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
  function handle(req: IncomingMessage, res: ServerResponse, body?: Buffer) {
    state.requests += 1;
    const fixed = opts.answer?.(req);
    if (fixed) {
      if (body) return s3Error(res, fixed.status, fixed.code, fixed.message);
      req.resume();
      req.on('end', () => s3Error(res, fixed.status, fixed.code, fixed.message));
      return;
    }
    const rewrite = opts.rewrite?.(req);
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
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
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
      },
    );
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
    get requests() {
      return state.requests;
    },
    get counted() {
      return state.counted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
