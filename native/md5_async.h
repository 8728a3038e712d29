#ifndef IMGBACKUP_MD5_ASYNC_H
#define IMGBACKUP_MD5_ASYNC_H
#include <node_api.h>
// Adds md5New and md5PairUpdateAsync (md5_async.c) to the addon's exports.
void md5_async_register(napi_env env, napi_value exports);
#endif
