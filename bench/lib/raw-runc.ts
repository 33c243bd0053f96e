// The raw substrate: the same runc sequence the Linux jail driver runs, done by hand with no
// gateway, no actors, no undo stack, no validation. It is the floor the gateway is compared with.
//
//   mkdir dirs -> mount overlay -> `ip -batch` (netns + veth, host side) -> `ip -n <ns> -batch`
//   (inside) -> config.json from the driver's own pure builder (oci-config.ts) -> `runc create`
//   -> `runc start` -> `runc exec <c> true`
//   teardown: SIGKILL init -> `runc delete --force` -> umount -> `ip -batch` (link del, netns del)
//   -> rm dir -> rmdir cgroups
//
// Processes are spawned from node exactly as the driver spawns them, so both sides pay the same
// fork/exec costs. Every object is named from a 10-char id with bench-only prefixes (container and
// netns `cpcraw-<id>`, veth `cpr<id>h`/`cpr<id>c`, cgroup `/coppice-bench/<id>`, dir
// `<root>/<id>`), never the driver's `coppice-`, so nothing here can be mistaken for a sandbox.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildConfig, nofile } from '../../src/backends/jail/linux/oci-config.ts';
import { DEFAULT_LIMITS } from '../../src/backends/types.ts';
import { sh, sleep } from './host.ts';

export const RAW_PREFIX = 'cpcraw-';
const CGROUP_ROOT = '/sys/fs/cgroup';
const CGROUP_PARENT = 'coppice-bench';
const NETNS_DIR = '/var/run/netns';

export interface RawNames {
  id: string;
  container: string;
  netns: string;
  vethHost: string;
  vethPeer: string;
  dir: string;
  rootfs: string;
  upper: string;
  work: string;
  cgroupsPath: string;
}

export function rawNames(root: string, id: string): RawNames {
  const dir = join(root, id);
  return {
    id,
    container: RAW_PREFIX + id,
    netns: RAW_PREFIX + id,
    vethHost: `cpr${id}h`,
    vethPeer: `cpr${id}c`,
    dir,
    rootfs: join(dir, 'rootfs'),
    upper: join(dir, 'upper'),
    work: join(dir, 'work'),
    cgroupsPath: `/${CGROUP_PARENT}/${id}`,
  };
}

function hostHardNofile(): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const hard = line?.trim().split(/\s+/)[4];
  return hard === undefined || hard === 'unlimited' ? Infinity : Number(hard) || 1024;
}

/** Per-step wall times of one raw create, ms. */
export interface RawTimings {
  dirs: number;
  overlay: number;
  netHost: number;
  netInside: number;
  config: number;
  runcCreate: number;
  runcStart: number;
  exec?: number;
  total: number;
}

export interface RawOptions {
  /** Directory holding one subdirectory per raw sandbox. */
  root: string;
  /** A /24 nobody else uses; .1 is the host-side gateway address. */
  subnet: string;
  hostInit?: string;
  hostBusybox?: string;
}

/** Spawn and wait; stdout/stderr piped and drained (like the driver's exec path). */
function runcExec(container: string, argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('runc', ['exec', container, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout.resume();
    let err = '';
    p.stderr.on('data', (b: Buffer) => (err += b));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(0) : reject(new Error(`runc exec ${container}: exit ${code} ${err.trim()}`))));
  });
}

export class RawRunc {
  readonly root: string;
  private readonly net3: string;
  private readonly free: number[] = [];
  private readonly ipOf = new Map<string, number>();
  private readonly rlimits = [nofile(hostHardNofile())];
  private readonly hostInit: string;
  private readonly hostBusybox: string;

  constructor(opts: RawOptions) {
    this.root = opts.root;
    this.net3 = opts.subnet.split('.').slice(0, 3).join('.');
    for (let i = 2; i < 255; i++) this.free.push(i);
    this.hostInit = opts.hostInit ?? '/usr/bin/tini-static';
    this.hostBusybox = opts.hostBusybox ?? '/bin/busybox';
  }

  /** Create and start one sandbox on `templatePath`; with `exec`, also run `true` in it. */
  async create(id: string, templatePath: string, opts: { exec?: boolean } = {}): Promise<RawTimings> {
    const n = rawNames(this.root, id);
    const host = this.free.shift();
    if (host === undefined) throw new Error('raw: out of addresses');
    this.ipOf.set(id, host);
    const ip = `${this.net3}.${host}`;
    const gw = `${this.net3}.1`;
    const t: Partial<RawTimings> = {};
    const t0 = performance.now();
    let t1 = t0;
    const lap = (k: keyof RawTimings) => {
      const now = performance.now();
      t[k] = now - t1;
      t1 = now;
    };

    await mkdir(n.dir);
    await Promise.all([mkdir(n.upper), mkdir(n.work), mkdir(n.rootfs)]);
    lap('dirs');
    await sh('mount', ['-t', 'overlay', n.container, '-o', `lowerdir=${templatePath},upperdir=${n.upper},workdir=${n.work}`, n.rootfs]);
    lap('overlay');
    await sh('ip', ['-batch', '-'], {
      input: [
        `netns add ${n.netns}`,
        `link add ${n.vethHost} type veth peer name ${n.vethPeer} netns ${n.netns}`,
        `addr add ${gw}/32 dev ${n.vethHost}`,
        `link set ${n.vethHost} up`,
        `route add ${ip}/32 dev ${n.vethHost}`,
        '',
      ].join('\n'),
    });
    lap('netHost');
    await sh('ip', ['-n', n.netns, '-batch', '-'], {
      input: [`link set ${n.vethPeer} name eth0`, `addr add ${ip}/24 dev eth0`, 'link set eth0 up', 'link set lo up', `route add default via ${gw} dev eth0`, ''].join('\n'),
    });
    lap('netInside');
    const config = buildConfig({
      id,
      netnsPath: join(NETNS_DIR, n.netns),
      cgroupsPath: n.cgroupsPath,
      limits: DEFAULT_LIMITS,
      hostInit: this.hostInit,
      hostBusybox: this.hostBusybox,
      rlimits: this.rlimits,
    });
    await writeFile(join(n.dir, 'config.json'), JSON.stringify(config, null, 2), { mode: 0o600 });
    lap('config');
    // runc hands its stdio to the container's PID 1: a file, or we would never see EOF.
    const fd = openSync(join(n.dir, 'create.log'), 'w', 0o600);
    try {
      await sh('runc', ['create', '--bundle', n.dir, '--pid-file', join(n.dir, 'init.pid'), n.container], { outFd: fd });
    } finally {
      closeSync(fd);
    }
    lap('runcCreate');
    await sh('runc', ['start', n.container]);
    lap('runcStart');
    if (opts.exec) {
      await runcExec(n.container, ['true']);
      lap('exec');
    }
    t.total = performance.now() - t0;
    return t as RawTimings;
  }

  /** `runc exec <container> true`: the raw exec round trip. */
  exec(id: string, argv: string[] = ['true']): Promise<number> {
    return runcExec(rawNames(this.root, id).container, argv);
  }

  async destroy(id: string): Promise<string[]> {
    const left = await rawTeardown(this.root, id);
    const host = this.ipOf.get(id);
    this.ipOf.delete(id);
    if (host !== undefined && left.length === 0) this.free.push(host);
    return left;
  }
}

function inOurCgroup(pid: number, n: RawNames): boolean {
  try {
    if (/^\d+ \(.*\) [ZX]/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) return false;
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(`${n.cgroupsPath}\n`);
  } catch {
    return false;
  }
}

function mountsUnder(path: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((mp): mp is string => mp !== undefined && (mp === path || mp.startsWith(path + '/')))
    .sort((a, b) => b.length - a.length);
}

/**
 * Remove everything raw sandbox `id` under `root` may own, tolerating "already gone"; returns what
 * is left. Also the sweep for a bench child that died: it needs nothing but the names.
 */
export async function rawTeardown(root: string, id: string): Promise<string[]> {
  const n = rawNames(root, id);
  const left: string[] = [];
  // A frozen container cannot die.
  const freezer = join(CGROUP_ROOT, 'freezer', CGROUP_PARENT, id, 'freezer.state');
  if (existsSync(freezer)) await writeFile(freezer, 'THAWED').catch(() => undefined);
  try {
    const pid = Number(readFileSync(join(n.dir, 'init.pid'), 'utf8').trim());
    if (Number.isInteger(pid) && pid > 1 && inOurCgroup(pid, n)) {
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 200 && inOurCgroup(pid, n); i++) await sleep(i < 20 ? 1 : 10);
    }
  } catch {
    /* no pid file: never started */
  }
  const del = await sh('runc', ['delete', '--force', n.container], { allowFail: true });
  if (del.code !== 0 && !/does not exist/i.test(del.stderr)) left.push(`runc ${n.container}: ${del.stderr.trim()}`);
  for (const mp of mountsUnder(n.dir)) {
    const r = await sh('umount', [mp], { allowFail: true });
    if (r.code !== 0) await sh('umount', ['-l', mp], { allowFail: true });
  }
  const lines: string[] = [];
  if (existsSync(`/sys/class/net/${n.vethHost}`)) lines.push(`link del ${n.vethHost}`);
  if (existsSync(join(NETNS_DIR, n.netns))) lines.push(`netns del ${n.netns}`);
  if (lines.length) await sh('ip', ['-force', '-batch', '-'], { input: lines.join('\n') + '\n', allowFail: true });
  if (existsSync(`/sys/class/net/${n.vethHost}`)) left.push(`veth ${n.vethHost}`);
  if (existsSync(join(NETNS_DIR, n.netns))) left.push(`netns ${n.netns}`);
  const mounts = mountsUnder(n.dir);
  if (mounts.length) left.push(...mounts.map((m) => `mount ${m}`));
  else await rm(n.dir, { recursive: true, force: true });
  for (const h of cgroupHierarchies()) {
    await rmdir(join(h, CGROUP_PARENT, id)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') left.push(`cgroup ${join(h, CGROUP_PARENT, id)} (${e.code})`);
    });
  }
  return left;
}

function cgroupHierarchies(): string[] {
  try {
    return [CGROUP_ROOT, ...readdirSync(CGROUP_ROOT).map((h) => join(CGROUP_ROOT, h))];
  } catch {
    return [];
  }
}

/** Remove the empty `/coppice-bench` parents (only when no raw sandbox of anyone is left in them). */
export async function removeCgroupParents(): Promise<void> {
  for (const h of cgroupHierarchies()) await rmdir(join(h, CGROUP_PARENT)).catch(() => undefined);
}

/** Raw sandboxes under `root` (one directory each), for the sweep. */
export function rawIds(root: string): string[] {
  try {
    return readdirSync(root).filter((d) => /^[a-z0-9]{10}$/.test(d));
  } catch {
    return [];
  }
}
