// An emulated S3 link for `--link`: on loopback every GET answers at once and one connection
// moves hundreds of MB/s, which hides whether a tool keeps enough requests in flight. S3 answers
// a GET after a first-byte wait and serves one connection at well below a link's rate; this
// proxy, in front of the bench's s3rver, holds each answer for that wait and paces its body at a
// per-answer rate. Request bodies (uploads) pass unpaced: only the answers are emulated.
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LinkOptions {
  /** Wait before each answer's headers (S3's first-byte latency). */
  firstByteMs: number;
  /** Most bytes per second one answer's body moves (one connection's rate). */
  bytesPerSecond: number;
}

/** Parses `--link MS,MBPS` (MB = 10^6 bytes). */
export function parseLink(v: string): LinkOptions | undefined {
  const m = /^(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)$/.exec(v.trim());
  if (!m) return undefined;
  const firstByteMs = Number(m[1]);
  const mbps = Number(m[2]);
  return mbps > 0 ? { firstByteMs, bytesPerSecond: mbps * 1e6 } : undefined;
}

/** Pacing granularity: small enough that a body's rate is even, large enough to be cheap. */
const SLICE = 64 * 1024;

export async function startLink(
  target: string,
  opts: LinkOptions,
): Promise<{ endpoint: string; server: Server }> {
  const to = new URL(target);
  const server = createServer((req, res) => {
    const up = request(
      {
        host: to.hostname,
        port: to.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.on('close', () => answer.destroy()); // the client went away: stop reading for it
        void (async () => {
          answer.pause();
          await sleep(opts.firstByteMs);
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          const started = performance.now();
          let sent = 0;
          for await (const chunk of answer as AsyncIterable<Buffer>) {
            for (let off = 0; off < chunk.length; off += SLICE) {
              const slice = chunk.subarray(off, off + SLICE);
              sent += slice.length;
              const due = started + (sent / opts.bytesPerSecond) * 1000;
              const wait = due - performance.now();
              if (wait > 1) await sleep(wait);
              if (res.destroyed) return;
              if (!res.write(slice)) {
                await new Promise<void>((r) => {
                  const go = () => {
                    res.off('drain', go);
                    res.off('close', go);
                    r();
                  };
                  res.on('drain', go);
                  res.on('close', go);
                });
              }
            }
          }
          res.end();
        })().catch(() => res.destroy());
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { endpoint: `http://127.0.0.1:${port}`, server };
}
