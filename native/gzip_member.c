// gzipMember(buffer, level): Promise<Buffer> — one gzip member of `buffer`, made by libdeflate on
// libuv's thread pool. libdeflate compresses whole buffers ~1.6-1.9x faster than zlib at the same
// level and ratio; GzipBlocks already cuts the tar stream into whole blocks, so nothing of zlib's
// streaming interface is missed. Every member is decompressed and compared with its input before
// it is handed back: a compressor fault fails the plate instead of reaching an archive.
#define NAPI_VERSION 8
#include <libdeflate.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LEVEL 12

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref input_ref;  // keeps the input alive while a pool thread reads it
  const uint8_t *in;
  size_t in_len;
  int level;
  uint8_t *out;
  size_t out_len;
  const char *error;
} job_t;

// One (de)compressor per pool thread and level, allocated on first use: allocating one per block
// would cost as much as compressing a small block.
static _Thread_local struct libdeflate_compressor *compressors[MAX_LEVEL + 1];
static _Thread_local struct libdeflate_decompressor *decompressor;
// Where the round-trip check decompresses to, kept per thread and grown as needed.
static _Thread_local uint8_t *check;
static _Thread_local size_t check_cap;

static void execute(napi_env env, void *data) {
  (void)env;
  job_t *j = data;
  struct libdeflate_compressor *c = compressors[j->level];
  if (!c) c = compressors[j->level] = libdeflate_alloc_compressor(j->level);
  if (!decompressor) decompressor = libdeflate_alloc_decompressor();
  if (!c || !decompressor) {
    j->error = "libdeflate: out of memory";
    return;
  }
  size_t bound = libdeflate_gzip_compress_bound(c, j->in_len);
  if (check_cap < j->in_len || !check) {
    free(check);
    check_cap = j->in_len > 0 ? j->in_len : 1;
    check = malloc(check_cap);
  }
  j->out = malloc(bound);
  if (!j->out || !check) {
    j->error = "libdeflate: out of memory";
    return;
  }
  j->out_len = libdeflate_gzip_compress(c, j->in, j->in_len, j->out, bound);
  if (j->out_len == 0) {
    j->error = "libdeflate: compression failed";
    return;
  }
  size_t got = 0;
  enum libdeflate_result r =
      libdeflate_gzip_decompress(decompressor, j->out, j->out_len, check, j->in_len, &got);
  if (r != LIBDEFLATE_SUCCESS || got != j->in_len ||
      (j->in_len > 0 && memcmp(check, j->in, j->in_len) != 0)) {
    j->error = "libdeflate: a compressed block did not decompress to its input";
  }
}

static void free_out(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  if (status != napi_ok || j->error) {
    napi_value msg, err;
    napi_create_string_utf8(env, j->error ? j->error : "libdeflate: cancelled", NAPI_AUTO_LENGTH,
                            &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, j->deferred, err);
    free(j->out);
  } else {
    napi_value result;
    if (napi_create_external_buffer(env, j->out_len, j->out, free_out, NULL, &result) != napi_ok) {
      // Runtimes that forbid external buffers get a copy.
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
      void *copy;
      napi_create_buffer_copy(env, j->out_len, j->out, &copy, &result);
      free(j->out);
    }
    napi_resolve_deferred(env, j->deferred, result);
  }
  napi_delete_reference(env, j->input_ref);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value gzip_member(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_buffer = false;
  if (argc >= 1) napi_is_buffer(env, argv[0], &is_buffer);
  int32_t level = -1;
  if (argc < 2 || !is_buffer || napi_get_value_int32(env, argv[1], &level) != napi_ok) {
    napi_throw_type_error(env, NULL, "gzipMember(buffer, level)");
    return NULL;
  }
  if (level < 0 || level > MAX_LEVEL) {
    napi_throw_range_error(env, NULL, "gzipMember: level must be 0-12");
    return NULL;
  }
  job_t *j = calloc(1, sizeof *j);
  if (!j) {
    napi_throw_error(env, NULL, "gzipMember: out of memory");
    return NULL;
  }
  void *in;
  napi_get_buffer_info(env, argv[0], &in, &j->in_len);
  j->in = in;
  j->level = level;
  napi_create_reference(env, argv[0], 1, &j->input_ref);
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "imgbackup.gzipMember", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

NAPI_MODULE_INIT() {
  napi_value fn, version;
  napi_create_function(env, "gzipMember", NAPI_AUTO_LENGTH, gzip_member, NULL, &fn);
  napi_set_named_property(env, exports, "gzipMember", fn);
  napi_create_string_utf8(env, LIBDEFLATE_VERSION_STRING, NAPI_AUTO_LENGTH, &version);
  napi_set_named_property(env, exports, "libdeflateVersion", version);
  return exports;
}
