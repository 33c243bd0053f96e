// Build @coppice/sdk: compile ../../src/sdk (and the protocol files it takes its wire types from)
// into dist/ as ESM JS + .d.ts, and into dist/cjs/ as CommonJS + .d.ts (for `require`), with the
// repository's own TypeScript. The sources import with `.ts` extensions; tsc rewrites them in the
// JS, and this script does the same in the .d.ts so a consumer's default tsconfig (no
// allowImportingTsExtensions) reads them.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const here = import.meta.dirname;
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
const tscRun = (extra) => {
  const r = spawnSync(process.execPath, [tsc, '-p', join(here, 'tsconfig.json'), ...extra], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
tscRun([]);
tscRun(['--module', 'commonjs', '--moduleResolution', 'bundler', '--outDir', join(dist, 'cjs')]);
// The files under dist/cjs are CommonJS whatever the package's "type" says.
writeFileSync(join(dist, 'cjs', 'package.json'), '{ "type": "commonjs" }\n');

const walk = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
for (const file of walk(dist)) {
  if (!file.endsWith('.d.ts')) continue;
  const text = readFileSync(file, 'utf8');
  const fixed = text.replace(/(from\s+['"])(\.{1,2}\/[^'"]+)\.ts(['"])/g, '$1$2.js$3');
  if (fixed !== text) writeFileSync(file, fixed);
}
