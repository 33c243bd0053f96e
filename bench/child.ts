// Runs ONE row module in its own process (so heap numbers start clean, --expose-gc is on, and a
// module that hangs or leaks can be stopped and swept without taking the run down):
//
//   node --expose-gc --import tsx bench/child.ts <module> <result.json>
//
// The runner (bench/run.ts) starts this; COPPICE_BENCH_MANIFEST names the file where the module
// records what it owns (see lib/cleanup.ts).
import { writeFileSync } from 'node:fs';
import { installSignalCleanup, runCleanups } from './lib/cleanup.ts';
import { settings, type ModuleResult, type RowModule } from './lib/types.ts';

const [name, out] = process.argv.slice(2);
if (!name || !out || !/^[a-z0-9-]+$/.test(name)) {
  process.stderr.write('usage: child.ts <module> <result.json>\n');
  process.exit(2);
}
installSignalCleanup();
const t0 = performance.now();
const notes: string[] = [];
const result: ModuleResult = { module: name, rows: [], notes, ms: 0 };
let code = 0;
try {
  const mod = (await import(`./rows/${name}.ts`)) as RowModule;
  result.rows = await mod.run(settings(), notes);
} catch (err) {
  code = 1;
  // The message and where it came from; the whole stack would swamp the report.
  const lines = ((err as Error).stack ?? String(err)).split('\n');
  notes.push(`${name} failed: ${lines.slice(0, 3).map((l) => l.trim()).join(' ')}`);
}
for (const f of await runCleanups()) notes.push(`cleanup: ${f}`);
result.ms = performance.now() - t0;
writeFileSync(out, JSON.stringify(result, null, 2));
process.exit(code);
