// OCI runtime config (config.json) and exec process (process.json) for a jail sandbox, built in TS
// rather than with `runc spec` + patching: pure, no I/O, unit-tested (test/unit/oci-config.test.ts).
// Defaults follow `runc spec` (mounts, masked/readonly paths) and docker (capabilities).
import type { Limits } from '../../types.ts';
import type { OciSeccomp } from './seccomp.ts';

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

export interface OciCapabilities {
  bounding: string[];
  effective: string[];
  permitted: string[];
  inheritable: string[];
  ambient: string[];
}

export interface OciProcess {
  terminal: boolean;
  user: OciUser;
  args: string[];
  env: string[];
  cwd: string;
  capabilities: OciCapabilities;
  rlimits: Rlimit[];
  noNewPrivileges: boolean;
}

export interface OciConfig {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: {
    namespaces: { type: string; path?: string }[];
    cgroupsPath: string;
    resources: {
      devices: { allow: boolean; access: string }[];
      memory: { limit: number };
      cpu: { quota: number; period: number };
      pids: { limit: number };
    };
    maskedPaths: string[];
    readonlyPaths: string[];
    uidMappings?: IdMapping[];
    gidMappings?: IdMapping[];
    seccomp?: OciSeccomp;
  };
}

export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** Where the host's static tini and busybox appear inside every sandbox (bind-mounted read-only). */
export const INIT_PATH = '/.coppice/init';
/** Where coppice-agent appears when it is the init (docs/agent.md); it names itself coppice-init. */
export const AGENT_PATH = '/.coppice/agent';
/** The agent serves on the listening socket runc passed as fd 3 (`runc create --preserve-fds 1`). */
export const AGENT_INIT_ARGS = [AGENT_PATH, '--listen-fd', '3'];
export const BUSYBOX_PATH = '/.coppice/busybox';
/** ~68 years: busybox `sleep` takes it, and PID 1 just has to stay alive while tini reaps orphans. */
export const INIT_ARGS = [INIT_PATH, '-s', '--', BUSYBOX_PATH, 'sleep', '2147483647'];
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Docker's default capability set (moby oci/caps/defaults.go). */
export const DEFAULT_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const CPU_PERIOD_US = 100_000;

export interface Rlimit {
  type: string;
  hard: number;
  soft: number;
}

/**
 * RLIMIT_NOFILE for sandbox processes: soft 1024 (select()-safe), hard up to 524288. Raising a hard
 * limit above the gateway's own needs CAP_SYS_RESOURCE, which a gateway may lack (this VM's bounding
 * set does), so the caller passes its own hard limit and we never ask for more.
 */
export function nofile(hostHard = 524_288): Rlimit {
  const hard = Math.min(524_288, hostHard);
  return { type: 'RLIMIT_NOFILE', hard, soft: Math.min(1024, hard) };
}

export const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/sys/firmware',
  '/proc/scsi',
];
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * Capabilities for a process running as `uid`. Root gets the default set; any other user gets it only
 * in the bounding set, so it has no privileges of its own but setuid binaries (sudo) still work,
 * which is why noNewPrivileges stays false. (runc would otherwise keep the caps effective across
 * setuid to a non-root user.)
 */
export function capabilitiesFor(uid: number): OciCapabilities {
  const set = uid === 0 ? [...DEFAULT_CAPS] : [];
  return { bounding: [...DEFAULT_CAPS], effective: set, permitted: [...set], inheritable: [], ambient: [] };
}

export interface ConfigInput {
  id: string;
  /** Join this netns; without it runc makes one (owned by the sandbox's user namespace, see index.ts). */
  netnsPath?: string;
  cgroupsPath: string;
  limits: Limits;
  /** Host paths of a static tini and a static busybox (the init without an agent). */
  hostInit?: string;
  hostBusybox?: string;
  /** Host path of coppice-agent: when set it is the init instead of tini (no tini, no busybox). */
  hostAgent?: string;
  /** Default `nofile()`. */
  rlimits?: Rlimit[];
  /** Hardening (userns.ts, seccomp.ts): sandbox uids 0..size-1 are host uids hostBase.. */
  userns?: { hostBase: number; size: number };
  seccomp?: OciSeccomp;
}

export function limitsToResources(limits: Limits): OciConfig['linux']['resources'] {
  return {
    devices: [{ allow: false, access: 'rwm' }], // runc adds its default allow-list (null, zero, tty, ...)
    memory: { limit: Math.round(limits.memoryMiB * 1024 * 1024) },
    cpu: { quota: Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US)), period: CPU_PERIOD_US },
    pids: { limit: Math.floor(limits.pids) },
  };
}

export function buildConfig(input: ConfigInput): OciConfig {
  const ro = ['bind', 'ro', 'nosuid', 'nodev'];
  let init: { args: string[]; mounts: OciMount[] };
  if (input.hostAgent) {
    init = { args: [...AGENT_INIT_ARGS], mounts: [{ destination: AGENT_PATH, type: 'bind', source: input.hostAgent, options: ro }] };
  } else {
    if (!input.hostInit || !input.hostBusybox) throw new Error('buildConfig: hostInit and hostBusybox, or hostAgent');
    init = {
      args: [...INIT_ARGS],
      mounts: [
        { destination: INIT_PATH, type: 'bind', source: input.hostInit, options: ro },
        { destination: BUSYBOX_PATH, type: 'bind', source: input.hostBusybox, options: ro },
      ],
    };
  }
  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: init.args,
      env: [DEFAULT_PATH],
      cwd: '/',
      capabilities: capabilitiesFor(0),
      rlimits: (input.rlimits ?? [nofile()]).map((r) => ({ ...r })),
      noNewPrivileges: false,
    },
    root: { path: 'rootfs', readonly: false },
    hostname: input.id,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
      },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      // Shows the sandbox its own cgroup (limits visible inside), read-only.
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
      ...init.mounts,
    ],
    linux: {
      namespaces: [
        { type: 'pid' },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'mount' },
        input.netnsPath ? { type: 'network', path: input.netnsPath } : { type: 'network' },
        ...(input.userns ? [{ type: 'user' }] : []),
      ],
      cgroupsPath: input.cgroupsPath,
      resources: limitsToResources(input.limits),
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
      ...(input.userns
        ? {
            uidMappings: [{ containerID: 0, hostID: input.userns.hostBase, size: input.userns.size }],
            gidMappings: [{ containerID: 0, hostID: input.userns.hostBase, size: input.userns.size }],
          }
        : {}),
      ...(input.seccomp ? { seccomp: input.seccomp } : {}),
    },
  };
}

export interface ExecInput {
  argv: string[];
  user: { name: string; uid: number; gid: number; additionalGids: number[]; home: string };
  env?: Record<string, string>;
  cwd?: string;
  /** Default `nofile()`; pass the same as the container's config. */
  rlimits?: Rlimit[];
  /**
   * no_new_privs. Off by default: a non-root user's setuid binaries (sudo, the templates' way to
   * become root) need it off; with hardening the driver sets it for root processes.
   */
  noNewPrivileges?: boolean;
}

/** process.json for `runc exec --process`: argv/env/cwd pass through byte-for-byte, no shell. */
export function buildExecProcess(input: ExecInput): OciProcess {
  const { user } = input;
  const env = new Map<string, string>([
    ['PATH', DEFAULT_PATH.slice('PATH='.length)],
    ['HOME', user.home],
    ['USER', user.name],
  ]);
  for (const [k, v] of Object.entries(input.env ?? {})) env.set(k, v);
  return {
    terminal: false,
    user: {
      uid: user.uid,
      gid: user.gid,
      ...(user.additionalGids.length ? { additionalGids: [...user.additionalGids] } : {}),
    },
    args: [...input.argv],
    env: [...env].map(([k, v]) => `${k}=${v}`),
    cwd: input.cwd ?? user.home,
    capabilities: capabilitiesFor(user.uid),
    rlimits: (input.rlimits ?? [nofile()]).map((r) => ({ ...r })),
    noNewPrivileges: input.noNewPrivileges ?? false,
  };
}
