// Leak check for tests and ops: for the given sandbox ids, which host objects still exist? Looks at
// the host directly (runc state, mountinfo, /run/netns, /sys/class/net, cgroupfs, the state dir, the
// nft table's per-sandbox set elements), not at anything the backend remembers, so it also finds
// what a crashed gateway left behind.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { listElements } from './firewall.ts';
import { cgroupDirs, sandboxNames } from './names.ts';
import { loopDevicesUnder } from './quota.ts';
import { Runc } from './runc.ts';
import { deadExecFiles, scanHost } from './sweep.ts';

export interface LeftoverOptions {
  /** The backend's stateDir; without it sandbox directories are not checked. */
  stateDir?: string;
  runc?: string;
}

export async function findLeftovers(ids: string[], opts: LeftoverOptions = {}): Promise<string[]> {
  const found: string[] = [];
  const containers = await new Runc(opts.runc).list().catch(() => []);
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const elements = await listElements(); // [] without the nft table
  for (const id of ids) {
    const n = sandboxNames(opts.stateDir ?? '/nonexistent', id);
    for (const c of containers) {
      if (c.id === n.container) found.push(`runc container ${c.id} (${c.status})`);
    }
    for (const line of mountinfo) {
      const fields = line.split(' ');
      const mountPoint = fields[4] ?? '';
      const sep = fields.indexOf('-');
      const source = sep > 0 ? (fields[sep + 2] ?? '') : '';
      const ours =
        source === n.container ||
        mountPoint === n.netnsPath ||
        mountPoint === `/run/netns/${n.netns}` ||
        (opts.stateDir !== undefined && (mountPoint === n.dir || mountPoint.startsWith(n.dir + '/')));
      if (ours) found.push(`mount ${source} on ${mountPoint}`);
    }
    if (existsSync(n.netnsPath)) found.push(`netns ${n.netns}`);
    for (const dev of [n.vethHost, n.vethPeer]) {
      if (existsSync(join('/sys/class/net', dev))) found.push(`veth ${dev}`);
    }
    if (opts.stateDir !== undefined && existsSync(n.dir)) found.push(`dir ${n.dir}`);
    if (opts.stateDir !== undefined) found.push(...(await loopDevicesUnder(n.dir)));
    for (const e of elements) {
      if (e.veth === n.vethHost) found.push(`nft element inet coppice ${e.set} ${e.veth} . ${e.ip}`);
    }
    for (const dir of cgroupDirs(id)) {
      if (existsSync(dir)) found.push(`cgroup ${dir}`);
    }
  }
  return found;
}

/**
 * Leak check by name, not by id list: every host object named like a sandbox of this state dir
 * (or of no gateway: a netns, veth, cgroup or nft element without any container), plus exec files
 * of gateway processes that are gone. Exact zero after a drain.
 */
export async function findLeftoversByName(opts: LeftoverOptions & { stateDir: string; runtimeDir?: string }): Promise<string[]> {
  const scan = await scanHost(opts.stateDir, new Runc(opts.runc));
  const ids = [...scan.named].filter((id) => !scan.foreign.has(id));
  const found = await findLeftovers(ids, opts);
  for (const f of deadExecFiles(join(opts.runtimeDir ?? '/run/coppice', 'exec'))) found.push(`exec file ${f}`);
  return found;
}
