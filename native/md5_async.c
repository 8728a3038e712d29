// md5PairUpdateAsync(state, chunks): Promise<Buffer[]> — md5PairUpdate of each chunk in turn,
// run on libuv's thread pool, so hashing never holds up the event loop that moves the bytes.
// Resolves with the md5 of each part that ended, in order. The caller keeps one call in flight
// per state and leaves the state and the chunks alone until it settles.
// md5New(): Buffer — the state of a plain md5 (md5_one_init) for md5PairUpdateAsync and
// md5PairFinal.
#define NAPI_VERSION 8
#include "md5_async.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "md5_pair.h"

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref state_ref;   // keep the state and the chunks alive while a pool thread reads them
  napi_ref chunks_ref;
  uint8_t *state;       // the state Buffer's bytes (not necessarily aligned for the struct)
  size_t n;
  const uint8_t **data;
  size_t *len;
  uint8_t (*parts)[16];
  size_t parts_n;
} md5_job_t;

static void free_job(md5_job_t *j) {
  free(j->data);
  free(j->len);
  free(j->parts);
  free(j);
}

static void execute(napi_env env, void *data) {
  (void)env;
  md5_job_t *j = data;
  md5_pair_t st;
  memcpy(&st, j->state, sizeof st);
  for (size_t i = 0; i < j->n; i++) {
    j->parts_n += md5_pair_update(&st, j->data[i], j->len[i], j->parts + j->parts_n);
  }
  memcpy(j->state, &st, sizeof st);
}

static void complete(napi_env env, napi_status status, void *data) {
  md5_job_t *j = data;
  if (status != napi_ok) {
    napi_value msg, err;
    napi_create_string_utf8(env, "md5PairUpdateAsync: cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, j->deferred, err);
  } else {
    napi_value result;
    napi_create_array_with_length(env, j->parts_n, &result);
    for (size_t i = 0; i < j->parts_n; i++) {
      napi_value b;
      void *copy;
      napi_create_buffer_copy(env, 16, j->parts[i], &copy, &b);
      napi_set_element(env, result, (uint32_t)i, b);
    }
    napi_resolve_deferred(env, j->deferred, result);
  }
  napi_delete_reference(env, j->state_ref);
  napi_delete_reference(env, j->chunks_ref);
  napi_delete_async_work(env, j->work);
  free_job(j);
}

// The state's bytes if v is a live md5 state Buffer, else NULL.
static uint8_t *state_bytes(napi_env env, napi_value v, md5_pair_t *st) {
  bool is_buffer = false;
  void *where = NULL;
  size_t len = 0;
  napi_is_buffer(env, v, &is_buffer);
  if (is_buffer) napi_get_buffer_info(env, v, &where, &len);
  if (!is_buffer || len != sizeof *st) return NULL;
  memcpy(st, where, sizeof *st);
  return st->magic == MD5_PAIR_MAGIC ? where : NULL;
}

static napi_value update_async(napi_env env, napi_callback_info info) {
  const char *usage = "md5PairUpdateAsync(state, buffers)";
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  md5_pair_t st;
  bool is_array = false;
  uint8_t *state = argc >= 2 ? state_bytes(env, argv[0], &st) : NULL;
  if (state) napi_is_array(env, argv[1], &is_array);
  if (!state || !is_array) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  uint32_t n = 0;
  napi_get_array_length(env, argv[1], &n);
  md5_job_t *j = calloc(1, sizeof *j);
  if (j) {
    j->data = calloc(n ? n : 1, sizeof *j->data);
    j->len = calloc(n ? n : 1, sizeof *j->len);
  }
  if (!j || !j->data || !j->len) {
    if (j) free_job(j);
    napi_throw_error(env, NULL, "md5PairUpdateAsync: out of memory");
    return NULL;
  }
  size_t room = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value c;
    bool is_buffer = false;
    napi_get_element(env, argv[1], i, &c);
    napi_is_buffer(env, c, &is_buffer);
    if (!is_buffer) {
      free_job(j);
      napi_throw_type_error(env, NULL, usage);
      return NULL;
    }
    void *d;
    napi_get_buffer_info(env, c, &d, &j->len[i]);
    j->data[i] = d;
    // Parts that end in this chunk, plus one the bytes left over from the last may end.
    room += j->len[i] / st.part_size + 1;
  }
  j->parts = calloc(room ? room : 1, 16);
  if (!j->parts) {
    free_job(j);
    napi_throw_error(env, NULL, "md5PairUpdateAsync: out of memory");
    return NULL;
  }
  j->n = n;
  j->state = state;
  napi_create_reference(env, argv[0], 1, &j->state_ref);
  napi_create_reference(env, argv[1], 1, &j->chunks_ref);
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "imgbackup.md5PairUpdateAsync", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

static napi_value md5_new(napi_env env, napi_callback_info info) {
  (void)info;
  md5_pair_t st;
  md5_one_init(&st);
  napi_value result;
  void *copy;
  napi_create_buffer_copy(env, sizeof st, &st, &copy, &result);
  return result;
}

void md5_async_register(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "md5PairUpdateAsync", NAPI_AUTO_LENGTH, update_async, NULL, &fn);
  napi_set_named_property(env, exports, "md5PairUpdateAsync", fn);
  napi_create_function(env, "md5New", NAPI_AUTO_LENGTH, md5_new, NULL, &fn);
  napi_set_named_property(env, exports, "md5New", fn);
}
