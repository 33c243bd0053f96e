#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx: no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
// Leave nothing keeping the loop alive after the command is done.
if (process.argv[2] !== 'serve' || process.exitCode === 130) process.exit(process.exitCode);
process.exit(process.exitCode);
