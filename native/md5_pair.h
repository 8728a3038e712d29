#ifndef IMGBACKUP_MD5_PAIR_H
#define IMGBACKUP_MD5_PAIR_H
#include <stddef.h>
#include <stdint.h>

#define MD5_PAIR_MAGIC 0x6d643532u /* "md52" */

// The md5 of a whole stream and of each part (part_size bytes; a multiple of 64) of it.
typedef struct {
  uint32_t magic;
  uint32_t buf_len;      // bytes in buf: the start of a block not yet hashed
  uint32_t single;       // 1: a plain md5 (md5_one_init), no parts
  uint32_t reserved;
  uint64_t part_size;
  uint64_t total;        // bytes hashed into whole (full blocks)
  uint64_t part_fill;    // of which in the current part
  uint32_t whole[4];
  uint32_t part[4];
  uint8_t buf[64];
} md5_pair_t;

// A plain md5 in the same state: md5_pair_update hashes `whole` only and ends no part; take
// the digest as md5_pair_final's `whole`.
int md5_one_init(md5_pair_t *st);
// 0, or -1 if part_size is not a positive multiple of 64.
int md5_pair_init(md5_pair_t *st, uint64_t part_size);
// Hashes `len` bytes; writes the md5 of each part that ended into parts[] (room for
// len / part_size + 1) and returns how many.
size_t md5_pair_update(md5_pair_t *st, const uint8_t *data, size_t len, uint8_t (*parts)[16]);
// The md5 of everything, and of the last part; returns 0 if there is no last part (the data
// ended exactly at a part's end), else 1.
int md5_pair_final(const md5_pair_t *st, uint8_t whole[16], uint8_t part[16]);
#endif
