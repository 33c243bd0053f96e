// `npm run bench`: the performance suite of issue 8. Runs each row module (bench/rows/*.ts) in its
// own node process (bench/child.ts, with --expose-gc), one after another, within a time budget;
// prints the table and writes it as markdown and JSON under bench/results/ (timestamped, plus
// latest.md / latest.json). See bench/README.md for what each row measures.
//
//   npm run bench [-- --quick] [-- --only create,exec-jail] [-- --skip exec-bhyve] [-- --budget 570] [-- --no-write]
//
// Needs root (runc, netns, mounts). Every module cleans up what it created; if one dies or overruns,
// the runner stops it (SIGTERM, then SIGKILL) and sweeps what its manifest names.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sweep, type ManifestEntry } from './lib/cleanup.ts';
import { consoleTable, describeMachine, machineLine, markdownTable, rawLegend } from './lib/report.ts';
import { fmt } from './lib/stats.ts';
import type { ModuleResult, Row } from './lib/types.ts';

interface ModuleSpec {
  name: string;
  /** Hard limit for the module, seconds (further capped by what is left of the budget). */
  timeoutS: number;
  what: string;
}

/** How long a module may take to clean up after SIGTERM before it is killed and swept. */
const GRACE_S = 30;

// Run order: cheap and self-contained first; bhyve (may build an image) and streaming late.
const MODULES: ModuleSpec[] = [
  { name: 'cli-startup', timeoutS: 60, what: 'coppice --version start-up (the compiled CLI)' },
  { name: 'noop-rest', timeoutS: 90, what: 'gateway overhead on the no-op backend (REST)' },
  { name: 'actors', timeoutS: 240, what: 'heap and spawn time of idle sandbox actors' },
  { name: 'exec-jail', timeoutS: 90, what: 'jail exec round trip vs runc exec' },
  { name: 'create', timeoutS: 180, what: 'cold create -> first exec vs the raw runc sequence' },
  { name: 'pause', timeoutS: 60, what: 'pause/resume vs the freezer' },
  { name: 'concurrent', timeoutS: 180, what: '20 concurrent creates vs one' },
  { name: 'exec-bhyve', timeoutS: 420, what: 'bhyve exec round trip vs a fresh ssh' },
  { name: 'stream', timeoutS: 270, what: 'streaming MB/s (bench/stream.ts)' },
  // Last: jail pools are being written while this suite is, and have hung a run once (see README).
  { name: 'pool-jail', timeoutS: 60, what: 'create -> ready on a jail pool hit (n/a until jail pools land)' },
];

// Display order of the table (rows of a module stay together).
const DISPLAY = ['create', 'pool-jail', 'exec-jail', 'exec-bhyve', 'stream', 'concurrent', 'noop-rest', 'actors', 'pause', 'cli-startup'];

/** Shown when the pool-jail module did not run or produced nothing. */
const POOL_ROW: Row = {
  id: 'pool-hit-jail',
  name: 'create -> ready, jail pool hit',
  unit: 'ms',
  n: null,
  median: null,
  p95: null,
  raw: null,
  goal: { text: '<= 30 ms', met: null },
};

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    skip: { type: 'string' },
    budget: { type: 'string', default: '570' },
    'no-write': { type: 'boolean', default: false },
  },
});
const only = values.only ? new Set(values.only.split(',')) : null;
const skip = new Set((values.skip ?? '').split(',').filter(Boolean));
for (const n of [...(only ?? []), ...skip]) {
  if (!MODULES.some((m) => m.name === n)) {
    process.stderr.write(`unknown module ${n} (modules: ${MODULES.map((m) => m.name).join(', ')})\n`);
    process.exit(2);
  }
}
const budgetS = Number(values.budget);
if (process.getuid?.() !== 0) process.stderr.write('warning: not root; the jail and bhyve rows need root\n');

const here = import.meta.dirname;
const work = mkdtempSync(join(tmpdir(), 'coppice-bench-run-'));
const started = new Date();
const t0 = performance.now();
const elapsedS = () => (performance.now() - t0) / 1000;
const machine = describeMachine();

interface ModuleRecord extends ModuleResult {
  loadBefore: number[];
  loadAfter: number[];
  exit: number | null;
}

function readJson<T>(path: string, fallback: T): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return fallback;
  }
}

async function runModule(m: ModuleSpec, limitS: number): Promise<ModuleRecord> {
  const result = join(work, `${m.name}.json`);
  const manifest = join(work, `${m.name}.manifest.json`);
  const loadBefore = loadavg();
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', join(here, 'child.ts'), m.name, result], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, COPPICE_BENCH_MANIFEST: manifest, COPPICE_BENCH_QUICK: values.quick ? '1' : '0' },
  });
  const notes: string[] = [];
  let exited = false;
  const exit = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      exited = true;
      resolve(code);
    }),
  );
  const timer = setTimeout(() => {
    notes.push(`${m.name} overran its ${Math.round(limitS)} s: stopped (SIGTERM, its own cleanup)`);
    child.kill('SIGTERM');
    setTimeout(() => {
      if (!exited) {
        notes.push(`${m.name} still running ${GRACE_S} s after SIGTERM (not answering signals): SIGKILL, swept by manifest`);
        child.kill('SIGKILL');
      }
    }, GRACE_S * 1000).unref();
  }, limitS * 1000);
  const code = await exit;
  clearTimeout(timer);
  const r = readJson<ModuleResult | null>(result, null);
  // Whatever the module still lists as owned was not cleaned up: sweep it by name.
  const owned = readJson<ManifestEntry[]>(manifest, []);
  if (owned.length) {
    const left = await sweep(owned);
    notes.push(`${m.name} left ${owned.length} owned object(s) behind; swept${left.length ? `, still left: ${left.join(', ')}` : ''}`);
  }
  if (!r) notes.push(`${m.name} wrote no result (exit ${code})`);
  return {
    module: m.name,
    rows: r?.rows ?? [],
    notes: [...(r?.notes ?? []), ...notes],
    ms: r?.ms ?? 0,
    loadBefore,
    loadAfter: loadavg(),
    exit: code,
  };
}

/** Replace the README's latest-results block with this run's table (full runs only). */
function updateReadme(stamp: string): void {
  const path = join(here, 'README.md');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return;
  }
  const start = text.search(/<!-- latest-results:start[^>]*-->/);
  const end = text.indexOf('<!-- latest-results:end -->');
  if (start < 0 || end < start) return;
  const open = /<!-- latest-results:start[^>]*-->/.exec(text)![0];
  const goals = rows.filter((r) => r.goal).map((r) => {
    const v = r.median === null ? r.note ?? 'no data' : `${fmt(r.median)}${r.unit === 'x' ? 'x' : ` ${r.unit}`}${r.goal!.text.includes('raw') && r.raw ? ` (${fmt(r.median / r.raw)}x raw)` : ''}`;
    return `- ${r.name}: ${v} — goal ${r.goal!.text}: ${r.goal!.met === null ? 'not judged' : r.goal!.met ? 'met' : '**missed**'}`;
  });
  const block = [
    open,
    `Run ${started.toISOString()} ([results/${stamp}.md](results/${stamp}.md)), ${fmt(totalS)} s, on: ${machineLine(machine)}.`,
    `1-min load average before→after each module: ${loads}.`,
    '',
    markdownTable(rows),
    '',
    'Goals:',
    '',
    ...goals,
    '',
  ].join('\n');
  writeFileSync(path, text.slice(0, start) + block + text.slice(end));
  process.stdout.write('updated the latest results in bench/README.md\n');
}

const records: ModuleRecord[] = [];
process.stderr.write(`coppice bench: ${machineLine(machine)}\n`);
for (const m of MODULES) {
  if ((only && !only.has(m.name)) || skip.has(m.name)) continue;
  const left = budgetS - elapsedS();
  if (left < 20) {
    records.push({ module: m.name, rows: [], notes: [`${m.name} not run: the ${budgetS} s budget was spent`], ms: 0, loadBefore: loadavg(), loadAfter: loadavg(), exit: null });
    continue;
  }
  process.stderr.write(`[${fmt(elapsedS())} s] ${m.name}: ${m.what}\n`);
  const rec = await runModule(m, Math.min(m.timeoutS, left));
  process.stderr.write(`[${fmt(elapsedS())} s] ${m.name}: ${rec.rows.length} row(s) in ${fmt(rec.ms / 1000)} s${rec.exit ? ` (exit ${rec.exit})` : ''}\n`);
  records.push(rec);
}
rmSync(work, { recursive: true, force: true });

const byModule = new Map(records.map((r) => [r.module, r]));
const rows: Row[] = [];
for (const d of DISPLAY) {
  const got = byModule.get(d)?.rows ?? [];
  if (d === 'pool-jail' && got.length === 0) {
    // Not run, or ran and produced nothing: say which, never pass a failure off as "no pools yet".
    rows.push({ ...POOL_ROW, note: byModule.has(d) ? 'no data (pool-jail failed, see notes)' : 'not run' });
  } else rows.push(...got);
}
const totalS = elapsedS();
const notes = [
  ...rows.filter((r) => r.note).map((r) => `${r.name}: ${r.note}`),
  ...records.flatMap((r) => r.notes.map((n) => `[${r.module}] ${n}`)),
];
const loads = records.map((r) => `${r.module} ${r.loadBefore[0]!.toFixed(1)}→${r.loadAfter[0]!.toFixed(1)}`).join(', ');

const table = consoleTable(rows);
process.stdout.write(`\n${table}\n\n`);
for (const n of notes) process.stdout.write(`- ${n}\n`);
process.stdout.write(`\nrun time ${fmt(totalS)} s${values.quick ? ' (--quick)' : ''}; 1-min load average per module: ${loads}\n`);

if (!values['no-write']) {
  const dir = join(here, 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = started.toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const md = [
    `# coppice bench — ${started.toISOString()}`,
    '',
    `Machine: ${machineLine(machine)}.`,
    `Run time: ${fmt(totalS)} s${values.quick ? ' (--quick: fewer samples)' : ''}. 1-min load average before→after each module: ${loads}.`,
    '',
    'ratio = median / raw median, both measured in this run (for MB/s and ops/s rows a ratio below 1 means slower than raw).',
    '',
    markdownTable(rows),
    '',
    '## What the raw column is',
    '',
    ...rawLegend(rows).map((l) => `- ${l}`),
    '',
    '## Notes',
    '',
    ...(notes.length ? notes.map((n) => `- ${n.replace(/\n/g, ' ')}`) : ['- none']),
    '',
  ].join('\n');
  const json = JSON.stringify(
    { startedAt: started.toISOString(), durationS: totalS, quick: values.quick, machine, modules: records.map(({ rows: _r, ...rest }) => rest), rows },
    null,
    2,
  );
  writeFileSync(join(dir, `${stamp}.md`), md);
  writeFileSync(join(dir, `${stamp}.json`), json);
  writeFileSync(join(dir, 'latest.md'), md);
  writeFileSync(join(dir, 'latest.json'), json);
  process.stdout.write(`wrote bench/results/${stamp}.md, .json, latest.md, latest.json\n`);
  if (!values.quick && !only && skip.size === 0) updateReadme(stamp);
}
process.exit(records.some((r) => r.exit !== 0 && r.exit !== null) ? 1 : 0);
