#!/usr/bin/env node
// The `coppice` command. Runs the compiled CLI (dist/, `npm run build`) when that build is newer
// than every source file; otherwise the TypeScript sources through tsx (a slower start, the same
// behaviour), so an edit since the last build is never run stale.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');

// A reader that went away (`coppice sbx ls | head -1`) is the end of the output, not an error.
for (const s of [process.stdout, process.stderr]) {
  s.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

function builtIsFresh() {
  let built;
  try {
    built = statSync(join(root, 'dist', '.build-stamp')).mtimeMs;
  } catch {
    return false;
  }
  const stack = [join(root, 'src'), join(root, 'machines')];
  while (stack.length) {
    const dir = stack.pop();
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.name.endsWith('.ts') && statSync(p).mtimeMs > built) return false;
    }
  }
  return true;
}

let main;
if (builtIsFresh()) {
  ({ main } = await import('../dist/src/cli/main.js'));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
const code = await main(process.argv.slice(2));
// Leave nothing keeping the loop alive after the command is done, but only once stdout and
// stderr have flushed: writes to a pipe are asynchronous, and process.exit() would drop the tail.
const flushed = (stream) => new Promise((resolve) => stream.write('', resolve));
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
