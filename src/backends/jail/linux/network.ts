// Routed veth networking: no bridge, so sandboxes cannot reach each other at L2. The host side of each
// pair carries the gateway address as a /32 plus a /32 route to the sandbox. Two `ip -batch`
// processes instead of ~8 `ip` calls (82 ms -> 28 ms on this machine kind, notes/substrate-measurements).
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { SANDBOX_IFGROUP } from './firewall.ts';
import { NETNS_DIR, type SandboxNames } from './names.ts';
import { run } from './run.ts';

export interface NetConfig {
  ip: string;
  gateway: string;
  prefix: number;
}

/**
 * With `initPid` the netns is the one runc made for the sandbox's PID 1 (owned by its user
 * namespace, which sysfs inside needs), named by `netns attach`; without, a new one is added.
 */
export function hostBatch(n: SandboxNames, net: NetConfig, initPid?: number): string {
  return [
    initPid ? `netns attach ${n.netns} ${initPid}` : `netns add ${n.netns}`,
    `link add ${n.vethHost} type veth peer name ${n.vethPeer} netns ${n.netns}`,
    `addr add ${net.gateway}/32 dev ${n.vethHost}`,
    // The interface group is how the nft rules recognise a sandbox veth (firewall.ts).
    `link set ${n.vethHost} group ${SANDBOX_IFGROUP} up`,
    `route add ${net.ip}/32 dev ${n.vethHost}`,
    '',
  ].join('\n');
}

export function sandboxBatch(n: SandboxNames, net: NetConfig): string {
  return [
    `link set ${n.vethPeer} name eth0`,
    `addr add ${net.ip}/${net.prefix} dev eth0`,
    'link set eth0 up',
    'link set lo up',
    `route add default via ${net.gateway} dev eth0`,
    '',
  ].join('\n');
}

export async function setupHostSide(n: SandboxNames, net: NetConfig, signal?: AbortSignal, initPid?: number): Promise<void> {
  await run('ip', ['-batch', '-'], { input: hostBatch(n, net, initPid), signal });
}

export async function setupSandboxSide(n: SandboxNames, net: NetConfig, signal?: AbortSignal): Promise<void> {
  await run('ip', ['-n', n.netns, '-batch', '-'], { input: sandboxBatch(n, net), signal });
}

/** Put a host veth made before the firewall existed into the sandbox group (re-adoption). */
export async function setSandboxGroup(n: SandboxNames): Promise<void> {
  await run('ip', ['link', 'set', 'dev', n.vethHost, 'group', String(SANDBOX_IFGROUP)]);
}

export const vethExists = (name: string) => existsSync(`/sys/class/net/${name}`);
export const netnsExists = (name: string) => existsSync(`${NETNS_DIR}/${name}`);

/**
 * Delete the host veth (which takes its peer and the /32 route with it) and the netns. Deleting the
 * veth explicitly matters: `ip netns del` only drops the bind mount, and the kernel destroys the
 * namespace and its devices asynchronously. Tolerates either being gone; returns what is left.
 */
export async function teardownNetwork(n: SandboxNames): Promise<string[]> {
  const lines: string[] = [];
  if (vethExists(n.vethHost)) lines.push(`link del ${n.vethHost}`);
  if (netnsExists(n.netns)) lines.push(`netns del ${n.netns}`);
  let error = '';
  if (lines.length > 0) {
    // -force: keep going after a failed line so one stuck object does not strand the other.
    await run('ip', ['-force', '-batch', '-'], { input: lines.join('\n') + '\n' }).catch((e: Error) => {
      error = e.message;
    });
  }
  const left: string[] = [];
  if (vethExists(n.vethHost)) left.push(`veth ${n.vethHost}${error ? ` (${error})` : ''}`);
  if (netnsExists(n.netns)) left.push(`netns ${n.netns}${error ? ` (${error})` : ''}`);
  return left;
}

/**
 * `ip netns add` makes /run/netns a shared bind mount of itself the first time it runs; two first
 * runs racing (10 concurrent creates on a fresh host) can stack two such mounts. Do it once, up front.
 */
export async function ensureNetnsDir(): Promise<void> {
  await mkdir(NETNS_DIR, { recursive: true });
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  const mounted = mountinfo.split('\n').some((l) => {
    const mp = l.split(' ')[4];
    return mp === '/run/netns' || mp === NETNS_DIR;
  });
  if (!mounted) {
    await run('mount', ['--bind', NETNS_DIR, NETNS_DIR]);
    await run('mount', ['--make-shared', NETNS_DIR]);
  }
}
