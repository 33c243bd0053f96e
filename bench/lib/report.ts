// Rendering: the console table, the markdown file and the machine description.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { fmt } from './stats.ts';
import { ratioOf, type Row } from './types.ts';

export interface Machine {
  os: string;
  kernel: string;
  cpu: string;
  vcpus: number;
  memGiB: number;
  cgroups: string;
  kvm: boolean;
  node: string;
  runc: string;
}

export function describeMachine(): Machine {
  const osRelease = existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : '';
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease)?.[1] ?? process.platform;
  let runc = 'not found';
  try {
    runc = execFileSync('runc', ['--version']).toString().split('\n')[0]!.trim();
  } catch {
    /* no runc */
  }
  const cgroups = existsSync('/sys/fs/cgroup/cgroup.controllers')
    ? 'v2 (unified)'
    : existsSync('/sys/fs/cgroup/unified')
      ? 'v1 hybrid'
      : 'v1';
  return {
    os: pretty,
    kernel: release(),
    cpu: cpus()[0]?.model ?? 'unknown',
    vcpus: cpus().length,
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    cgroups,
    kvm: existsSync('/dev/kvm'),
    node: process.version,
    runc,
  };
}

export function machineLine(m: Machine): string {
  return `${m.vcpus} vCPU ${m.cpu}, ${m.memGiB} GiB, ${m.os}, kernel ${m.kernel}, cgroups ${m.cgroups}, ${m.kvm ? '/dev/kvm' : 'no /dev/kvm'}, node ${m.node}, ${m.runc}`;
}

const unitSuffix = (r: Row) => (r.unit === 'x' ? 'x' : ` ${r.unit}`);

function cell(r: Row, x: number | null): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : `${fmt(x)}${unitSuffix(r)}`;
}

export function cells(r: Row): string[] {
  const ratio = ratioOf(r);
  const goal = r.goal ? `${r.goal.text}${r.goal.met === null ? '' : r.goal.met ? ' (met)' : ' (MISSED)'}` : '';
  // A row without a number says why in its median cell: short texts as they are, else see notes.
  const na = r.median === null ? (r.note && r.note.length <= 40 ? r.note : /^skipped/.test(r.note ?? '') ? 'skipped (see notes)' : 'no data (see notes)') : null;
  return [
    r.name,
    r.n === null ? '—' : String(r.n),
    na ?? cell(r, r.median),
    cell(r, r.p95),
    cell(r, r.raw),
    ratio === null ? '—' : `${fmt(ratio)}x`,
    goal,
  ];
}

export const HEADERS = ['row', 'n', 'median', 'p95', 'raw median (same run)', 'ratio', 'goal'];

export function consoleTable(rows: Row[]): string {
  const data = [HEADERS, ...rows.map(cells)];
  const widths = HEADERS.map((_, i) => Math.max(...data.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(data[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...data.slice(1).map(line)].join('\n');
}

const esc = (s: string) => s.replace(/\|/g, '\\|');

export function markdownTable(rows: Row[]): string {
  const out = [`| ${HEADERS.join(' | ')} |`, `|${HEADERS.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) out.push(`| ${cells(r).map(esc).join(' | ')} |`);
  return out.join('\n');
}

/** What each raw column was, once per distinct text. */
export function rawLegend(rows: Row[]): string[] {
  const seen = new Map<string, string[]>();
  for (const r of rows) if (r.rawName) seen.set(r.rawName, [...(seen.get(r.rawName) ?? []), r.name]);
  return [...seen].map(([raw, names]) => `${names.join('; ')}: raw = ${raw}`);
}
