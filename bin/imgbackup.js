#!/usr/bin/env node
// CommonJS on purpose (bin/package.json): libuv sizes its thread pool from UV_THREADPOOL_SIZE
// when the pool is first used, and the ESM loader uses it before an ES module's first line runs.
// Its default, 4 threads, would cap compression at 4 cores on any machine.
const { availableParallelism } = require('node:os');
// Keep in step with THREADPOOL_SIZE in src/archive/compress-limit.ts (a test checks both).
const cores = availableParallelism();
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, cores + 3 + Math.ceil(cores / 4)));
// The SDK's notice about its own future Node support is not the user's business on every run;
// package-lock pins the SDK version this tool was tested with.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
void import('../dist/src/cli/main.js').then(async ({ main }) => {
  process.exitCode = await main(process.argv);
});
