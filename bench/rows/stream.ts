// Streaming throughput, from bench/stream.ts (another engineer's script, run as it is, as a child
// process, and its printed report parsed). It compares reading a command's stdout straight from
// `runc exec` with reading it through the gateway's exec WebSocket (raw ws and the SDK), on one
// sandbox, in the same run.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { forget, pidStart, record, sameProcess, sweep } from '../lib/cleanup.ts';
import { freeSubnet, log, range, sleep } from '../lib/host.ts';
import type { BenchSettings, Row } from '../lib/types.ts';

const SCRIPT = join(import.meta.dirname, '..', 'stream.ts');

interface Parsed {
  producer: string;
  path: string;
  medianMBps: number;
  runs: number[];
}

/** Lines like `label:` then `  <path>  median  123 MB/s   (runs: 1, 2, 3)`. */
export function parseStreamReport(text: string): Parsed[] {
  const out: Parsed[] = [];
  let producer = '';
  for (const line of text.split('\n')) {
    const head = /^(\S.*):\s*$/.exec(line);
    if (head) {
      producer = head[1]!;
      continue;
    }
    const m = /^\s+(.+?)\s+median\s+([\d.]+)\s*MB\/s(?:\s+\(runs:\s*([^)]*)\))?/.exec(line);
    if (m) out.push({ producer, path: m[1]!.trim(), medianMBps: Number(m[2]), runs: (m[3] ?? '').split(',').map(Number).filter(Number.isFinite) });
  }
  return out;
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function runStream(args: string[], limitMs: number, notes: string[]): Promise<{ code: number | null; out: string; err: string }> {
  log(`stream: node bench/stream.ts ${args.join(' ')}`);
  const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid!;
  const start = pidStart(pid);
  const unrecord = record({ kind: 'pid', pid, start, what: 'bench/stream.ts' });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b));
  child.stderr.on('data', (b: Buffer) => (err += b));
  // The script starts its own gateway (`coppice serve --state-dir <dir>`): learn that dir from the
  // child's command line, so whatever the script leaves in it is cleaned up by name afterwards.
  let gwState: string | undefined;
  const watch = setInterval(() => {
    for (const k of childrenOf(pid)) {
      try {
        const argv = readFileSync(`/proc/${k}/cmdline`, 'utf8').split('\0');
        const i = argv.indexOf('--state-dir');
        if (i > 0 && argv[i + 1] && !gwState) {
          gwState = argv[i + 1];
          record({ kind: 'jail-state', dir: gwState });
        }
      } catch {
        /* gone */
      }
    }
  }, 50);
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(async () => {
      notes.push(`bench/stream.ts overran ${limitMs / 1000} s: stopped`);
      // Its gateway child first (SIGINT drains its sandbox), then the script itself, by pid.
      const kids = childrenOf(pid).map((k) => ({ k, st: pidStart(k) }));
      for (const { k } of kids) process.kill(k, 'SIGINT');
      for (let i = 0; i < 100 && kids.some(({ k, st }) => sameProcess(k, st)); i++) await sleep(100);
      if (sameProcess(pid, start)) child.kill('SIGKILL');
    }, limitMs);
    child.on('close', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  clearInterval(watch);
  unrecord();
  if (gwState && existsSync(gwState)) {
    const left = await sweep([{ kind: 'jail-state', dir: gwState }]);
    notes.push(`bench/stream.ts left its gateway state dir ${gwState}; removed${left.length ? `, except: ${left.join(', ')}` : ''}`);
  }
  if (gwState) forget({ kind: 'jail-state', dir: gwState });
  return { code, out, err };
}

export async function run(s: BenchSettings, notes: string[]): Promise<Row[]> {
  const skip = (why: string): Row[] => [
    { id: 'stream', name: 'streaming stdout through the gateway WebSocket', unit: 'MB/s', n: null, median: null, p95: null, raw: null, note: `skipped: ${why}` },
  ];
  if (!existsSync(SCRIPT)) return skip('bench/stream.ts is not in this tree yet');
  const src = readFileSync(SCRIPT, 'utf8');
  // Pass only the flags the script declares (it is edited by someone else; parseArgs is strict).
  const want: Record<string, string> = {
    mb: s.quick ? '32' : '128',
    runs: s.quick ? '2' : '5',
    subnet: freeSubnet(range(240, 249, (i) => `10.78.${i}.0/24`)),
  };
  const args: string[] = [];
  for (const [k, v] of Object.entries(want)) if (new RegExp(`\\b${k}\\s*:\\s*\\{\\s*type`).test(src)) args.push(`--${k}`, v);
  const limitMs = s.quick ? 120_000 : 240_000;
  // Once more if the first attempt fails: it is someone else's script against a moving tree.
  let attempt = await runStream(args, limitMs, notes);
  if (attempt.code !== 0 || parseStreamReport(attempt.out).length === 0) {
    notes.push(`bench/stream.ts attempt 1: exit ${attempt.code}; stderr: ${attempt.err.trim().split('\n').slice(0, 8).join(' ').slice(0, 500)}`);
    attempt = await runStream(args, limitMs, notes);
  }
  const { code, out, err } = attempt;
  const parsed = parseStreamReport(out);
  if (code !== 0 || parsed.length === 0) {
    notes.push(`bench/stream.ts exit ${code}; stdout: ${out.slice(-300)}; stderr: ${err.trim().split('\n').slice(0, 8).join(' ').slice(0, 500)}`);
    if (parsed.length === 0) return skip(`bench/stream.ts produced no parsable report (exit ${code})`);
  }
  const rows: Row[] = [];
  const producers = [...new Set(parsed.map((p) => p.producer))];
  for (const producer of producers) {
    const mine = parsed.filter((p) => p.producer === producer);
    const direct = mine.find((p) => /runc|direct/i.test(p.path));
    for (const p of mine) {
      if (p === direct) continue;
      rows.push({
        id: `stream-${producer}-${p.path}`.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/-+$/, ''),
        name: `streaming, ${producer}: ${p.path}`,
        unit: 'MB/s',
        n: p.runs.length || null,
        median: p.medianMBps,
        p95: null,
        raw: direct?.medianMBps ?? null,
        rawName: direct ? `${direct.path} (MB/s; ratio < 1 means slower than raw)` : undefined,
        extra: { runs: p.runs, rawRuns: direct?.runs },
      });
    }
  }
  const header = out.split('\n').find((l) => l.startsWith('streaming '));
  if (header) rows[0] && (rows[0].note = `bench/stream.ts: ${header.trim()}`);
  return rows;
}
