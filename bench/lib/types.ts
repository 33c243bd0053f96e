// What a bench row module returns, and what the runner records.

export type Unit = 'ms' | 's' | 'MB/s' | 'ops/s' | 'KB' | 'MB' | 'x';

export interface Goal {
  /** As printed, e.g. `<= 2 ms`. */
  text: string;
  /** null when it cannot be judged (row skipped, no data). */
  met: boolean | null;
}

export interface Row {
  /** Stable key (used in the JSON and by --only). */
  id: string;
  name: string;
  unit: Unit;
  /** Samples behind median/p95 (null for a single derived number). */
  n: number | null;
  median: number | null;
  p95: number | null;
  /** The raw substrate's median for the same operation, measured in the same run. */
  raw: number | null;
  /** What the raw column measured (README explains each). */
  rawName?: string;
  /** median / raw, unless the row says otherwise. */
  ratio?: number | null;
  goal?: Goal;
  /** Printed under the table. */
  note?: string;
  /** Everything else worth keeping in the JSON (per-step breakdowns, raw samples). */
  extra?: Record<string, unknown>;
}

export interface ModuleResult {
  module: string;
  rows: Row[];
  /** Things that went wrong or were skipped, with the reason. */
  notes: string[];
  ms: number;
}

/** Shared settings handed to every row module (from run.ts flags, through the environment). */
export interface BenchSettings {
  /** Fewer samples everywhere (a smoke run of the harness itself). */
  quick: boolean;
  templatesRoot: string;
}

export function settings(): BenchSettings {
  return {
    quick: process.env.COPPICE_BENCH_QUICK === '1',
    templatesRoot: process.env.COPPICE_BENCH_TEMPLATES ?? '/var/lib/coppice/templates',
  };
}

export interface RowModule {
  run(s: BenchSettings, notes: string[]): Promise<Row[]>;
}

export function ratioOf(r: Row): number | null {
  if (r.ratio !== undefined) return r.ratio;
  if (r.median === null || r.raw === null || !(r.raw > 0)) return null;
  return r.median / r.raw;
}
