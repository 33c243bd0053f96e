// `npm run build`: the SDK package (packages/sdk/dist) and the gateway + CLI as plain JS in dist/
// (what bin/coppice.mjs runs). dist/.build-stamp marks the build: bin/coppice.mjs runs the
// sources through tsx instead whenever a source file is newer (an edit since the last build).
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const root = join(import.meta.dirname, '..');
const step = (args) => {
  const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

step([join(root, 'packages', 'sdk', 'build.mjs')]);

const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
step([tsc, '-p', join(root, 'tsconfig.build.json')]);
// Static files (the devtools page) are not compiled: the built edge reads the sources' own.
mkdirSync(join(dist, 'src', 'edge'), { recursive: true });
symlinkSync(join('..', '..', '..', 'src', 'edge', 'static'), join(dist, 'src', 'edge', 'static'));
writeFileSync(join(dist, '.build-stamp'), new Date().toISOString() + '\n');
