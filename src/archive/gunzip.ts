import { createGunzip, type Gunzip } from 'node:zlib';

/**
 * Output bytes per zlib step when a tarball is read back. Node's zlib stream takes one trip to
 * libuv's thread pool per output chunk, and its 16 KiB default made gunzip cost 1.6-2.6× the
 * CPU of 256 KiB chunks on image-like data (measured, 200 MB); the chunk is all it buffers.
 */
export const GUNZIP_CHUNK_BYTES = 256 * 1024;

/** A gunzip stream for reading a tarball (restore, verify --deep). */
export function tarballGunzip(): Gunzip {
  return createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES });
}
