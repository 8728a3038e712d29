import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';

export interface S3Options {
  endpointUrl?: string;
  region?: string;
  profile?: string;
  /** Total attempts per request, including the first. */
  maxAttempts?: number;
}

/** Enough sockets for every plate's GETs and upload parts at once; the SDK's default is 50. */
const MAX_SOCKETS = 256;
/** A connect that takes longer than this is a dead endpoint, not a slow one. */
const CONNECT_TIMEOUT_MS = 5_000;
/** No byte for this long on an open request means the connection is gone; retry it. */
const SOCKET_TIMEOUT_MS = 120_000;

export const DEFAULT_MAX_ATTEMPTS = 5;

export function createS3Client(opts: S3Options): S3Client {
  const endpoint = opts.endpointUrl ?? process.env.AWS_ENDPOINT_URL;
  const config: S3ClientConfig = {
    maxAttempts: opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    requestHandler: {
      connectionTimeout: CONNECT_TIMEOUT_MS,
      requestTimeout: SOCKET_TIMEOUT_MS,
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
    },
  };
  if (opts.profile) config.profile = opts.profile;
  const region = opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (region) config.region = region;
  if (endpoint) {
    config.endpoint = endpoint;
    // S3-compatible stores want path-style URLs and break on the SDK's aws-chunked CRC uploads
    // (s3rver stores the framing as object bytes, radosgw answers 411).
    config.forcePathStyle = true;
    config.requestChecksumCalculation = 'WHEN_REQUIRED';
    config.responseChecksumValidation = 'WHEN_REQUIRED';
    config.region ??= 'us-east-1';
  }
  return new S3Client(config);
}
