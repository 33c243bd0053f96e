// Removing everything one sandbox owns, used by both destroy() and create's rollback. Every step
// tolerates "already gone" and the function never throws: it returns what it could not remove.
import { existsSync, readFileSync } from 'node:fs';
import { rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { thaw } from './freezer.ts';
import { cgroupDirs, freezerStatePath, type SandboxNames } from './names.ts';
import { teardownNetwork } from './network.ts';
import { detachLoopsUnder } from './quota.ts';
import { unmountRootfs } from './rootfs.ts';
import { INIT_PID_FILE, type Runc } from './runc.ts';

const msg = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** True if `pid` is alive (not a zombie) and sits in this sandbox's cgroup, i.e. really is its init. */
function isSandboxInit(pid: number, n: SandboxNames): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/^\d+ \(.*\) [ZX]/s.test(stat)) return false;
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(`${n.cgroupsPath}\n`);
  } catch {
    return false;
  }
}

/**
 * SIGKILL the container's PID 1 ourselves (the kernel then kills the rest of its pid namespace) and
 * wait for it, so that `runc delete --force` finds the container stopped and skips its 100 ms
 * polling sleep (destroy: ~140 ms -> ~45 ms). The pid comes from runc's --pid-file and is only
 * used if it still belongs to this sandbox's cgroup, so a recycled pid is never hit.
 */
async function killInit(n: SandboxNames): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(join(n.dir, INIT_PID_FILE), 'utf8').trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1 || !isSandboxInit(pid, n)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  for (let i = 0; i < 200 && isSandboxInit(pid, n); i++) await sleep(i < 20 ? 1 : 10);
}

export async function removeContainer(runc: Runc, n: SandboxNames): Promise<string[]> {
  // A frozen container cannot die: thaw first so the SIGKILL lands.
  if (existsSync(freezerStatePath(n.id))) await thaw(freezerStatePath(n.id)).catch(() => undefined);
  await killInit(n);
  try {
    await runc.deleteForce(n.container);
    return [];
  } catch (e) {
    return [`runc container ${n.container} (${msg(e)})`];
  }
}

/** runc removes its cgroups on delete; this catches the ones it left (e.g. after a failed create). */
export async function removeCgroups(n: SandboxNames): Promise<string[]> {
  const left: string[] = [];
  for (const dir of cgroupDirs(n.id)) {
    await rmdir(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') left.push(`cgroup ${dir} (${e.code})`);
    });
  }
  return left;
}

export async function removeSandboxDir(n: SandboxNames): Promise<string[]> {
  const mounts = await unmountRootfs(n);
  // Never recurse into a still-mounted rootfs: that would walk into the template through the overlay.
  if (mounts.length > 0) return mounts;
  // A disk image attached but never mounted (a create killed between the two) keeps a loop device.
  const loops = await detachLoopsUnder(n.dir);
  if (loops.length > 0) return loops;
  try {
    await rm(n.dir, { recursive: true, force: true });
    return [];
  } catch (e) {
    return [`dir ${n.dir} (${msg(e)})`];
  }
}

export interface TeardownResult {
  left: string[];
  /** False when the host veth (and with it the /32 route) is still there: the address stays quarantined. */
  addressReusable: boolean;
}

export async function teardown(runc: Runc, n: SandboxNames): Promise<TeardownResult> {
  const left = [...(await removeContainer(runc, n))];
  left.push(...(await removeSandboxDir(n)));
  const net = await teardownNetwork(n);
  left.push(...net);
  left.push(...(await removeCgroups(n)));
  return { left, addressReusable: !existsSync(join('/sys/class/net', n.vethHost)) };
}
