#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx: no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
// Leave nothing keeping the loop alive after the command is done, but only once stdout and
// stderr have flushed: writes to a pipe are asynchronous, and process.exit() would drop the tail.
const flushed = (stream) => new Promise((resolve) => stream.write('', resolve));
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
