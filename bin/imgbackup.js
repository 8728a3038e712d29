#!/usr/bin/env node
// The SDK's notice about its own future Node support is not the user's business on every run;
// package-lock pins the SDK version this tool was tested with.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { main } = await import('../dist/src/cli/main.js');
process.exitCode = await main(process.argv);
