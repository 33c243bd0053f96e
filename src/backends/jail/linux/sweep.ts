// Host objects by naming scheme, whoever made them: runc containers `coppice-<id>`, sandbox dirs,
// mounts and loop devices (disk images) under <stateDir>/sandboxes, netns `coppice-<id>`, veths
// `cpc<id>h|c`, cgroups `coppice/<id>`, nft elements of `cpc<id>h`. The drain sweeps them so nothing
// is left even when a record (or the actor) is missing; the start sweeps what no live container can
// own any more. Objects of a container another gateway (another state dir) runs are never touched.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { EXEC_FILE_PREFIX } from './exec.ts';
import { listElements, type Firewall } from './firewall.ts';
import { CGROUP_ROOT, ID_RE, NETNS_DIR, PREFIX, sandboxNames } from './names.ts';
import { loopsUnder } from './quota.ts';
import { mountsUnder } from './rootfs.ts';
import type { Runc } from './runc.ts';
import { teardown } from './teardown.ts';

export interface HostScan {
  /** Ids of runc containers whose bundle is under this state dir. */
  ours: Set<string>;
  /** Ids of coppice containers of other gateways: not ours to judge. */
  foreign: Set<string>;
  /** Every id a coppice-named host object carries (containers, dirs, mounts, loops, netns, veths, cgroups, nft). */
  named: Set<string>;
}

const idOf = (name: string, prefix: string, suffix = ''): string | null => {
  if (!name.startsWith(prefix) || !name.endsWith(suffix)) return null;
  const id = name.slice(prefix.length, name.length - suffix.length);
  return ID_RE.test(id) ? id : null;
};

const list = (dir: string): string[] => {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
};

export async function scanHost(stateDir: string, runc: Runc): Promise<HostScan> {
  const sandboxes = join(stateDir, 'sandboxes');
  const ours = new Set<string>();
  const foreign = new Set<string>();
  const named = new Set<string>();
  const add = (id: string | null) => id !== null && named.add(id);
  for (const c of await runc.list().catch(() => [])) {
    const id = idOf(c.id, PREFIX);
    if (id === null) continue;
    if (typeof c.bundle === 'string' && c.bundle.startsWith(sandboxes + '/')) ours.add(id);
    else foreign.add(id);
    named.add(id);
  }
  for (const name of list(sandboxes)) add(ID_RE.test(name) ? name : null);
  const under = (path: string) => add(path.slice(sandboxes.length + 1).split('/')[0] ?? null);
  for (const mp of mountsUnder(sandboxes)) if (mp !== sandboxes) under(mp);
  for (const l of await loopsUnder(sandboxes)) under(l.backingFile);
  for (const name of list(NETNS_DIR)) add(idOf(name, PREFIX));
  for (const name of list('/sys/class/net')) add(idOf(name, 'cpc', 'h') ?? idOf(name, 'cpc', 'c'));
  for (const h of ['', ...list(CGROUP_ROOT)]) for (const name of list(join(CGROUP_ROOT, h, 'coppice'))) add(ID_RE.test(name) ? name : null);
  for (const e of await listElements()) add(idOf(e.veth, 'cpc', 'h'));
  // A `named` id may also be a foreign container's: callers skip those.
  return { ours, foreign, named };
}

export interface SweepOptions {
  stateDir: string;
  runc: Runc;
  firewall: Firewall;
  /** Ids this backend is creating or running right now. */
  skip(id: string): boolean;
  /**
   * Also ids that still have a container or a sandbox dir of ours (the drain: every actor is gone).
   * Without it (the start) those are reconcile's: adopted, or destroyed as orphans.
   */
  includeOwned: boolean;
}

export interface SweepResult {
  swept: string[];
  left: string[];
}

export async function sweepHost(opts: SweepOptions): Promise<SweepResult> {
  const scan = await scanHost(opts.stateDir, opts.runc);
  const result: SweepResult = { swept: [], left: [] };
  for (const id of scan.named) {
    if (scan.foreign.has(id) || opts.skip(id)) continue;
    const n = sandboxNames(opts.stateDir, id);
    if (!opts.includeOwned && (scan.ours.has(id) || existsSync(n.dir))) continue;
    const { left } = await teardown(opts.runc, n);
    left.push(...(await opts.firewall.unregister(n.vethHost, null)));
    result.swept.push(id);
    result.left.push(...left);
  }
  return result;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Exec files (`exec-<pid>-<n>.{json,pid}`) of gateway processes that are gone. */
export function deadExecFiles(execDir: string): string[] {
  return list(execDir)
    .filter((name) => {
      const pid = Number(idOfPid(name));
      return Number.isInteger(pid) && pid > 0 && !alive(pid);
    })
    .map((name) => join(execDir, name));
}

const idOfPid = (name: string) => (name.startsWith(EXEC_FILE_PREFIX) ? name.slice(EXEC_FILE_PREFIX.length).split('-')[0] : undefined);

export function sweepExecFiles(execDir: string): void {
  for (const f of deadExecFiles(execDir)) rmSync(f, { force: true });
}
