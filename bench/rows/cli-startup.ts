// `coppice --version` start-up: the compiled CLI (dist/, `npm run build`) from spawn to exit, as
// a shell runs it; the raw column is `node -e 0` (node's own start-up, the floor). Builds first
// when dist/ is missing or older than the sources (bin/coppice.mjs would run tsx then).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { log } from '../lib/host.ts';
import { median, p95 } from '../lib/stats.ts';
import type { BenchSettings, Row } from '../lib/types.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'coppice.mjs');

function timeRuns(n: number, args: string[]): number[] {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    xs.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  }
  return xs;
}

export async function run(s: BenchSettings, notes: string[]): Promise<Row[]> {
  const N = s.quick ? 10 : 30;
  log('cli-startup: npm run build (so the compiled CLI is what runs)');
  const b = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  if (b.status !== 0) notes.push(`npm run build failed: ${b.stderr}`);
  const out = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
  if (!/^coppice \S+\n$/.test(out.stdout)) notes.push(`coppice --version printed ${JSON.stringify(out.stdout)}`);
  timeRuns(3, [BIN, '--version']); // warm the page cache
  const cli = timeRuns(N, [BIN, '--version']);
  const floor = timeRuns(N, ['-e', '0']);
  const m = median(cli);
  return [
    {
      id: 'cli-version',
      name: 'coppice --version (spawn to exit)',
      unit: 'ms',
      n: N,
      median: m,
      p95: p95(cli),
      raw: median(floor),
      rawName: 'node -e 0',
      goal: { text: '<= 150 ms', met: m <= 150 },
      extra: { samples: cli, floor },
    },
  ];
}
