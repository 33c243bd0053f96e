// The FreeBSD jail driver's whole command vocabulary, as pure argv builders: reading this file is
// reading the command plan. UNTESTED ON REAL FREEBSD (flags from the manuals and pot/Bastille/runj).
import type { Limits } from '../../types.ts';
import type { FreebsdNames } from './names.ts';

export interface JailParams {
  devfsRuleset: number;
}

/** defer_destroy is `on` for a deleted snapshot that forks (clones) still keep alive. */
export const SNAPSHOT_COLUMNS = ['name', 'defer_destroy', 'coppice:template', 'coppice:created', 'referenced'] as const;

export const zfs = {
  /** A sandbox's filesystem: a clone of the template's (or a snapshot's) snapshot. */
  clone: (origin: string, n: FreebsdNames) => ['zfs', 'clone', '-o', `mountpoint=${n.mountpoint}`, origin, n.dataset],
  /** Create rollback only: a fresh clone has no snapshots, so -r removes nothing anyone else owns. */
  destroyRecursive: (dataset: string) => ['zfs', 'destroy', '-r', dataset],
  /** Without -r: refuses (harmlessly) while the dataset still has snapshots or clones. */
  destroy: (dataset: string) => ['zfs', 'destroy', dataset],
  /** Deferred: a snapshot that still has clones (forks) goes away when its last clone does. */
  destroyDeferred: (snapshot: string) => ['zfs', 'destroy', '-d', snapshot],
  /** The API's record rides on the snapshot as user properties, so listing needs no state file. */
  snapshot: (name: string, template: string, createdAt: string) =>
    ['zfs', 'snapshot', '-o', `coppice:template=${template}`, '-o', `coppice:created=${createdAt}`, name],
  snapshotsOf: (dataset: string) => ['zfs', 'list', '-H', '-o', 'name', '-t', 'snapshot', '-d', '1', dataset],
  /** Every sandbox snapshot, tab-separated in SNAPSHOT_COLUMNS order (-p: sizes in bytes). */
  allSnapshots: (root: string) => ['zfs', 'list', '-H', '-p', '-o', SNAPSHOT_COLUMNS.join(','), '-t', 'snapshot', '-r', `${root}/sandboxes`],
  referenced: (snapshot: string) => ['zfs', 'get', '-H', '-p', '-o', 'value', 'referenced', snapshot],
  /** A destroyed sandbox whose snapshots outlive it: keep the dataset, unmounted, marked for reaping. */
  retire: (dataset: string) => ['zfs', 'set', 'canmount=noauto', 'coppice:retired=on', dataset],
  unmount: (dataset: string) => ['zfs', 'unmount', dataset],
  /** Two lines: the retired mark (`on` or `-`), then the origin snapshot (or `-`). */
  retiredAndOrigin: (dataset: string) => ['zfs', 'get', '-H', '-o', 'value', 'coppice:retired,origin', dataset],
};

export const net = {
  epairCreate: () => ['ifconfig', 'epair', 'create'],
  rename: (from: string, to: string) => ['ifconfig', from, 'name', to],
  bridgeAdd: (bridge: string, n: FreebsdNames) => ['ifconfig', bridge, 'addm', n.ifA, 'up'],
  /** A private port forwards nothing to other private ports: sandboxes cannot reach each other at L2. */
  isolate: (bridge: string, n: FreebsdNames) => ['ifconfig', bridge, 'private', n.ifA],
  up: (n: FreebsdNames) => ['ifconfig', n.ifA, 'up'],
  /** Destroying either end of an epair destroys both. */
  destroy: (ifname: string) => ['ifconfig', ifname, 'destroy'],
};

export const jail = {
  /** -i prints the new jid. `persist`: the jail lives with no process in it (like a pool slot). */
  create: (n: FreebsdNames, p: JailParams) => [
    'jail', '-i', '-c',
    `name=${n.jail}`, `path=${n.mountpoint}`, `host.hostname=${n.id}`,
    'persist', 'vnet', `vnet.interface=${n.ifB}`,
    'mount.devfs', `devfs_ruleset=${p.devfsRuleset}`,
    'allow.raw_sockets=0', 'enforce_statfs=2', 'exec.clean',
  ],
  remove: (n: FreebsdNames) => ['jail', '-r', n.jail],
  list: () => ['jls', 'name', 'jid'],
  jidOf: (n: FreebsdNames) => ['jls', '-j', n.jail, 'jid'],
};

/** Run inside the jail as root (its own binaries: the template must carry the base system's). */
export const inside = {
  loopback: (n: FreebsdNames) => ['jexec', n.jail, '/sbin/ifconfig', 'lo0', 'inet', '127.0.0.1/8', 'up'],
  address: (n: FreebsdNames, ip: string, prefix: number) => ['jexec', n.jail, '/sbin/ifconfig', n.ifB, 'inet', `${ip}/${prefix}`, 'up'],
  route: (n: FreebsdNames, gateway: string) => ['jexec', n.jail, '/sbin/route', 'add', 'default', gateway],
};

/** rctl needs kern.racct.enable=1 in /boot/loader.conf. memoryuse is resident memory; pcpu is % of one core. */
export const rctl = {
  add: (n: FreebsdNames, l: Limits) => [
    ['rctl', '-a', `jail:${n.jail}:memoryuse:deny=${Math.ceil(l.memoryMiB)}M`],
    ['rctl', '-a', `jail:${n.jail}:maxproc:deny=${Math.floor(l.pids)}`],
    ['rctl', '-a', `jail:${n.jail}:pcpu:deny=${Math.round(l.cpus * 100)}`],
  ],
  /** Before `jail -r`: a maxproc deny can block the jail's shutdown. */
  remove: (n: FreebsdNames) => ['rctl', '-r', `jail:${n.jail}`],
};

export const proc = {
  signalAll: (sig: 'STOP' | 'CONT', jid: number) => ['pkill', `-${sig}`, '-j', String(jid)],
  states: (jid: number) => ['ps', '-o', 'stat=', '-J', String(jid)],
  /** -l: a clean login environment for `user`; jexec execs the command (no fork), so its pid is ours. */
  exec: (jailName: string, user: string, argv: string[]) => ['jexec', '-l', '-U', user, jailName, ...argv],
};

/** stderr of a removal whose object is already gone (these make destroy idempotent). */
export const GONE = {
  rctl: /No such process|not found/i,
  jail: /not found|No such/i,
  ifconfig: /does not exist/i,
  zfs: /does not exist/i,
  unmount: /not currently mounted|does not exist/i,
};
