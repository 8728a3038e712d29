// Two MD5s over the same bytes in one pass: the whole tarball's and its current part's (the
// S3 multipart ETag needs both). MD5 is one long dependency chain, so a CPU runs two
// independent chains interleaved in about the time of one: this costs ~half of hashing twice.
// Checked against OpenSSL's MD5 by the tests, byte for byte, on every chunking.
#include "md5_pair.h"

#include <string.h>

#define F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define H(x, y, z) ((x) ^ (y) ^ (z))
#define I(x, y, z) ((y) ^ ((x) | ~(z)))
#define ROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))
// One RFC 1321 step on both lanes (a1..d1 and a2..d2) with the same message word.
#define STEP2(f, a, b, c, d, x, t, s)         \
  a##1 += f(b##1, c##1, d##1) + (x) + (t);    \
  a##2 += f(b##2, c##2, d##2) + (x) + (t);    \
  a##1 = ROTL(a##1, s) + b##1;                \
  a##2 = ROTL(a##2, s) + b##2;

// The same on one lane, for a plain md5 (a source object's).
#define STEP1(f, a, b, c, d, x, t, s)      \
  a##1 += f(b##1, c##1, d##1) + (x) + (t); \
  a##1 = ROTL(a##1, s) + b##1;

// RFC 1321's 64 steps, each as STEP(f, a, b, c, d, message word, constant, shift).
#define ROUNDS(STEP) \
  STEP(F, a, b, c, d, X[0], 0xd76aa478u, 7); \
  STEP(F, d, a, b, c, X[1], 0xe8c7b756u, 12); \
  STEP(F, c, d, a, b, X[2], 0x242070dbu, 17); \
  STEP(F, b, c, d, a, X[3], 0xc1bdceeeu, 22); \
  STEP(F, a, b, c, d, X[4], 0xf57c0fafu, 7); \
  STEP(F, d, a, b, c, X[5], 0x4787c62au, 12); \
  STEP(F, c, d, a, b, X[6], 0xa8304613u, 17); \
  STEP(F, b, c, d, a, X[7], 0xfd469501u, 22); \
  STEP(F, a, b, c, d, X[8], 0x698098d8u, 7); \
  STEP(F, d, a, b, c, X[9], 0x8b44f7afu, 12); \
  STEP(F, c, d, a, b, X[10], 0xffff5bb1u, 17); \
  STEP(F, b, c, d, a, X[11], 0x895cd7beu, 22); \
  STEP(F, a, b, c, d, X[12], 0x6b901122u, 7); \
  STEP(F, d, a, b, c, X[13], 0xfd987193u, 12); \
  STEP(F, c, d, a, b, X[14], 0xa679438eu, 17); \
  STEP(F, b, c, d, a, X[15], 0x49b40821u, 22); \
  STEP(G, a, b, c, d, X[1], 0xf61e2562u, 5); \
  STEP(G, d, a, b, c, X[6], 0xc040b340u, 9); \
  STEP(G, c, d, a, b, X[11], 0x265e5a51u, 14); \
  STEP(G, b, c, d, a, X[0], 0xe9b6c7aau, 20); \
  STEP(G, a, b, c, d, X[5], 0xd62f105du, 5); \
  STEP(G, d, a, b, c, X[10], 0x02441453u, 9); \
  STEP(G, c, d, a, b, X[15], 0xd8a1e681u, 14); \
  STEP(G, b, c, d, a, X[4], 0xe7d3fbc8u, 20); \
  STEP(G, a, b, c, d, X[9], 0x21e1cde6u, 5); \
  STEP(G, d, a, b, c, X[14], 0xc33707d6u, 9); \
  STEP(G, c, d, a, b, X[3], 0xf4d50d87u, 14); \
  STEP(G, b, c, d, a, X[8], 0x455a14edu, 20); \
  STEP(G, a, b, c, d, X[13], 0xa9e3e905u, 5); \
  STEP(G, d, a, b, c, X[2], 0xfcefa3f8u, 9); \
  STEP(G, c, d, a, b, X[7], 0x676f02d9u, 14); \
  STEP(G, b, c, d, a, X[12], 0x8d2a4c8au, 20); \
  STEP(H, a, b, c, d, X[5], 0xfffa3942u, 4); \
  STEP(H, d, a, b, c, X[8], 0x8771f681u, 11); \
  STEP(H, c, d, a, b, X[11], 0x6d9d6122u, 16); \
  STEP(H, b, c, d, a, X[14], 0xfde5380cu, 23); \
  STEP(H, a, b, c, d, X[1], 0xa4beea44u, 4); \
  STEP(H, d, a, b, c, X[4], 0x4bdecfa9u, 11); \
  STEP(H, c, d, a, b, X[7], 0xf6bb4b60u, 16); \
  STEP(H, b, c, d, a, X[10], 0xbebfbc70u, 23); \
  STEP(H, a, b, c, d, X[13], 0x289b7ec6u, 4); \
  STEP(H, d, a, b, c, X[0], 0xeaa127fau, 11); \
  STEP(H, c, d, a, b, X[3], 0xd4ef3085u, 16); \
  STEP(H, b, c, d, a, X[6], 0x04881d05u, 23); \
  STEP(H, a, b, c, d, X[9], 0xd9d4d039u, 4); \
  STEP(H, d, a, b, c, X[12], 0xe6db99e5u, 11); \
  STEP(H, c, d, a, b, X[15], 0x1fa27cf8u, 16); \
  STEP(H, b, c, d, a, X[2], 0xc4ac5665u, 23); \
  STEP(I, a, b, c, d, X[0], 0xf4292244u, 6); \
  STEP(I, d, a, b, c, X[7], 0x432aff97u, 10); \
  STEP(I, c, d, a, b, X[14], 0xab9423a7u, 15); \
  STEP(I, b, c, d, a, X[5], 0xfc93a039u, 21); \
  STEP(I, a, b, c, d, X[12], 0x655b59c3u, 6); \
  STEP(I, d, a, b, c, X[3], 0x8f0ccc92u, 10); \
  STEP(I, c, d, a, b, X[10], 0xffeff47du, 15); \
  STEP(I, b, c, d, a, X[1], 0x85845dd1u, 21); \
  STEP(I, a, b, c, d, X[8], 0x6fa87e4fu, 6); \
  STEP(I, d, a, b, c, X[15], 0xfe2ce6e0u, 10); \
  STEP(I, c, d, a, b, X[6], 0xa3014314u, 15); \
  STEP(I, b, c, d, a, X[13], 0x4e0811a1u, 21); \
  STEP(I, a, b, c, d, X[4], 0xf7537e82u, 6); \
  STEP(I, d, a, b, c, X[11], 0xbd3af235u, 10); \
  STEP(I, c, d, a, b, X[2], 0x2ad7d2bbu, 15); \
  STEP(I, b, c, d, a, X[9], 0xeb86d391u, 21);

static const uint32_t MD5_INIT[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};

static void load_words(uint32_t X[16], const uint8_t *p) {
  for (int i = 0; i < 16; i++) {
    X[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
           (uint32_t)p[4 * i + 3] << 24;
  }
}

// One 64-byte block into one state.
static void block1(uint32_t s1[4], const uint8_t *p) {
  uint32_t X[16];
  load_words(X, p);
  uint32_t a1 = s1[0], b1 = s1[1], c1 = s1[2], d1 = s1[3];
  ROUNDS(STEP1)
  s1[0] += a1, s1[1] += b1, s1[2] += c1, s1[3] += d1;
}

// One 64-byte block into both states.
static void block2(uint32_t s1[4], uint32_t s2[4], const uint8_t *p) {
  uint32_t X[16];
  load_words(X, p);
  uint32_t a1 = s1[0], b1 = s1[1], c1 = s1[2], d1 = s1[3];
  uint32_t a2 = s2[0], b2 = s2[1], c2 = s2[2], d2 = s2[3];
  ROUNDS(STEP2)
  s1[0] += a1, s1[1] += b1, s1[2] += c1, s1[3] += d1;
  s2[0] += a2, s2[1] += b2, s2[2] += c2, s2[3] += d2;
}

// The digest of state `s` after `tail` (n < 64 bytes) ends a message of `length` bytes.
static void finish(const uint32_t s_in[4], const uint8_t *tail, size_t n, uint64_t length,
                   uint8_t out[16]) {
  uint32_t s[4];
  memcpy(s, s_in, sizeof s);
  uint8_t pad[128] = {0};
  if (n > 0) memcpy(pad, tail, n);  // tail is NULL when n is 0
  pad[n] = 0x80;
  size_t blocks = n < 56 ? 1 : 2;
  uint64_t bits = length * 8;
  for (int i = 0; i < 8; i++) pad[blocks * 64 - 8 + i] = (uint8_t)(bits >> (8 * i));
  for (size_t b = 0; b < blocks; b++) block1(s, pad + 64 * b);
  for (int i = 0; i < 4; i++) {
    for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(s[i] >> (8 * j));
  }
}

int md5_one_init(md5_pair_t *st) {
  // One part that never ends: only the whole md5 is kept, on one lane.
  md5_pair_init(st, UINT64_MAX - 63);
  st->single = 1;
  return 0;
}

int md5_pair_init(md5_pair_t *st, uint64_t part_size) {
  if (part_size == 0 || part_size % 64 != 0) return -1;
  memset(st, 0, sizeof *st);
  st->magic = MD5_PAIR_MAGIC;
  st->part_size = part_size;
  memcpy(st->whole, MD5_INIT, sizeof st->whole);
  memcpy(st->part, MD5_INIT, sizeof st->part);
  return 0;
}

// Full blocks at `p`, never past the current part's end; a part that ends is digested.
static size_t blocks(md5_pair_t *st, const uint8_t *p, size_t n, uint8_t (*parts)[16],
                     size_t done) {
  for (size_t i = 0; i < n; i++) {
    if (st->single) {
      block1(st->whole, p + 64 * i);
      st->total += 64;
      continue;
    }
    block2(st->whole, st->part, p + 64 * i);
    st->total += 64;
    st->part_fill += 64;
    if (st->part_fill == st->part_size) {
      finish(st->part, NULL, 0, st->part_size, parts[done++]);
      memcpy(st->part, MD5_INIT, sizeof st->part);
      st->part_fill = 0;
    }
  }
  return done;
}

size_t md5_pair_update(md5_pair_t *st, const uint8_t *data, size_t len, uint8_t (*parts)[16]) {
  size_t done = 0;
  while (len > 0) {
    if (st->buf_len > 0 || len < 64) {
      size_t take = 64 - st->buf_len < len ? 64 - st->buf_len : len;
      memcpy(st->buf + st->buf_len, data, take);
      st->buf_len += (uint32_t)take;
      data += take;
      len -= take;
      if (st->buf_len == 64) {
        done = blocks(st, st->buf, 1, parts, done);
        st->buf_len = 0;
      }
      continue;
    }
    size_t to_part_end = (size_t)((st->part_size - st->part_fill) / 64);
    size_t n = len / 64 < to_part_end ? len / 64 : to_part_end;
    done = blocks(st, data, n, parts, done);
    data += 64 * n;
    len -= 64 * n;
  }
  return done;
}

int md5_pair_final(const md5_pair_t *st, uint8_t whole[16], uint8_t part[16]) {
  finish(st->whole, st->buf, st->buf_len, st->total + st->buf_len, whole);
  if (st->single) return 0;
  uint64_t part_len = st->part_fill + st->buf_len;
  // The last part, unless the data ended exactly on a part boundary (and is not empty).
  if (part_len == 0 && st->total > 0) return 0;
  finish(st->part, st->buf, st->buf_len, part_len, part);
  return 1;
}
