// Cleanup discipline for the benches. Every row module registers what it creates in two places:
//  - an in-process stack of cleanups, run on normal exit and on SIGTERM/SIGINT (the runner sends
//    SIGTERM when a module overruns its time);
//  - a manifest file the runner hands it (COPPICE_BENCH_MANIFEST), naming the state dirs, raw
//    roots, pool-ctl setups and child pids it owns. If the module dies without cleaning up
//    (SIGKILL after the grace period, a crash), the runner sweeps what the manifest names.
// Everything is found again by name or recorded pid (checked against its start time): nothing is
// ever killed or removed by a pattern that could match another engineer's objects.
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { teardown } from '../../src/backends/jail/linux/teardown.ts';
import { sandboxNames } from '../../src/backends/jail/linux/names.ts';
import { Runc } from '../../src/backends/jail/linux/runc.ts';
import { rawIds, rawTeardown, removeCgroupParents } from './raw-runc.ts';
import { sh, sleep } from './host.ts';

export type ManifestEntry =
  /** A gateway state dir: every `<dir>/sandboxes/<id>` is a jail sandbox to tear down by its names. */
  | { kind: 'jail-state'; dir: string }
  /** A raw runc root: every `<dir>/<id>` is a raw sandbox. */
  | { kind: 'raw-root'; dir: string }
  /** A Linux pool-ctl setup: its env (state dir, bridge, prefix) and images root. */
  | { kind: 'pool-ctl'; poolCtl: string; env: Record<string, string>; template: string; bridge: string }
  /** A child process we started: pid plus /proc start time, so a recycled pid is never signalled. */
  | { kind: 'pid'; pid: number; start: string; what: string }
  /** A plain directory to remove at the end. */
  | { kind: 'dir'; dir: string };

const manifestPath = process.env.COPPICE_BENCH_MANIFEST;
const entries: ManifestEntry[] = [];

function save(): void {
  if (manifestPath) writeFileSync(manifestPath, JSON.stringify(entries, null, 1));
}

export function record(e: ManifestEntry): () => void {
  entries.push(e);
  save();
  return () => {
    const i = entries.indexOf(e);
    if (i >= 0) entries.splice(i, 1);
    save();
  };
}

export function pidStart(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

/** True while `pid` is the very process recorded (same start time) and not a zombie. */
export function sameProcess(pid: number, start: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[0] !== 'Z' && rest[0] !== 'X' && rest[19] === start;
  } catch {
    return false;
  }
}

/** Drop an entry equal to `e` (same JSON) from the manifest. */
export function forget(e: ManifestEntry): void {
  const key = JSON.stringify(e);
  const i = entries.findIndex((x) => JSON.stringify(x) === key);
  if (i >= 0) entries.splice(i, 1);
  save();
}

type Cleanup = { label: string; fn: () => Promise<void> | void };
const stack: Cleanup[] = [];

/** Register a cleanup (run last-in first-out); the returned function unregisters it. */
export function onCleanup(label: string, fn: () => Promise<void> | void): () => void {
  const c = { label, fn };
  stack.push(c);
  return () => {
    const i = stack.indexOf(c);
    if (i >= 0) stack.splice(i, 1);
  };
}

/** Run every registered cleanup; returns the failures as text. */
export async function runCleanups(): Promise<string[]> {
  const failures: string[] = [];
  while (stack.length) {
    const c = stack.pop()!;
    try {
      await c.fn();
    } catch (e) {
      failures.push(`${c.label}: ${(e as Error).message}`);
    }
  }
  return failures;
}

let signalled = false;
export function installSignalCleanup(): void {
  const handler = (sig: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    process.stderr.write(`  · ${sig}: cleaning up\n`);
    void runCleanups().then((f) => {
      for (const x of f) process.stderr.write(`  · cleanup failed: ${x}\n`);
      process.exit(130);
    });
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

/** Mount points at or under `path`. */
function mountsUnder(path: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((mp): mp is string => mp !== undefined && (mp === path || mp.startsWith(path + '/')));
}

/** Remove a directory only when nothing is mounted under it (never recurse into a template). */
export function removeDirSafely(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const m = mountsUnder(dir);
  if (m.length) return m.map((x) => `mount ${x}`);
  rmSync(dir, { recursive: true, force: true });
  return [];
}

/** Tear down whatever a Linux pool-ctl setup of ours still has: release guests, drain, drop the bridge. */
export async function poolCtlSweep(e: Extract<ManifestEntry, { kind: 'pool-ctl' }>): Promise<string[]> {
  const env = { ...process.env, ...e.env };
  const left: string[] = [];
  try {
    const out = (await sh(e.poolCtl, ['list', '--json'], { env, timeoutMs: 60_000 })).stdout.trim().split('\n').pop()!;
    const l = JSON.parse(out) as { vms: { vm: string }[] };
    for (const v of l.vms) await sh(e.poolCtl, ['release', v.vm], { env, allowFail: true, timeoutMs: 60_000 });
  } catch (err) {
    left.push(`pool-ctl list: ${(err as Error).message}`);
  }
  await sh(e.poolCtl, ['drain', e.template], { env, allowFail: true, timeoutMs: 60_000 });
  if (existsSync(`/sys/class/net/${e.bridge}`)) await sh('ip', ['link', 'del', e.bridge], { allowFail: true });
  if (existsSync(`/sys/class/net/${e.bridge}`)) left.push(`bridge ${e.bridge}`);
  const state = e.env.COPPICE_POOL_CTL_STATE;
  if (state) left.push(...removeDirSafely(state));
  return left;
}

/** Undo everything a manifest names (the runner calls this for a module that died). */
export async function sweep(list: ManifestEntry[]): Promise<string[]> {
  const left: string[] = [];
  // Processes first (a gateway child may still be creating), then substrates, then dirs.
  for (const e of list) {
    if (e.kind !== 'pid' || !sameProcess(e.pid, e.start)) continue;
    try {
      process.kill(e.pid, 'SIGINT');
    } catch {
      /* gone */
    }
    for (let i = 0; i < 100 && sameProcess(e.pid, e.start); i++) await sleep(100);
    if (sameProcess(e.pid, e.start)) {
      try {
        process.kill(e.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  const runc = new Runc();
  for (const e of list) {
    if (e.kind === 'jail-state') {
      const dir = join(e.dir, 'sandboxes');
      const ids = existsSync(dir) ? readdirSync(dir) : [];
      for (const id of ids) left.push(...(await teardown(runc, sandboxNames(e.dir, id))).left);
      left.push(...removeDirSafely(e.dir));
    } else if (e.kind === 'raw-root') {
      for (const id of rawIds(e.dir)) left.push(...(await rawTeardown(e.dir, id)));
      await removeCgroupParents();
      left.push(...removeDirSafely(e.dir));
    } else if (e.kind === 'pool-ctl') {
      left.push(...(await poolCtlSweep(e)));
    }
  }
  for (const e of list) if (e.kind === 'dir') left.push(...removeDirSafely(e.dir));
  return left;
}
