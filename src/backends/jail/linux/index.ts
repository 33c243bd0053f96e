// The jail backend's Linux driver: runc + overlayfs + a netns with a routed veth per sandbox
// (DESIGN.md "Backends"). This file only sequences; each host mechanism lives in its own module.
import { chmodSync, chownSync, existsSync, rmSync, symlinkSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { BackendLogger } from '../../types.ts';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CoppiceError, backendFailed, badRequest, conflict, insufficientStorage, notFound } from '../../../errors.ts';
import type { Backend, CreateSpec, ExecProcess, ExecSpec, LiveSandbox, SandboxHandle, SnapshotRecord, Template } from '../../types.ts';
import { AddressPool } from '../address-pool.ts';
import { startExec } from './exec.ts';
import { freeze, readFreezer, thaw } from './freezer.ts';
import { deleteSnapshot, listSnapshots, readSnapshot, removePartialSnapshots, seedUpper, SNAPSHOT_ID, writeSnapshot } from './snapshot.ts';
import { assertId, freezerStatePath, ID_RE, PREFIX, sandboxNames, type SandboxNames } from './names.ts';
import { ensureNetnsDir, setSandboxGroup, setupHostSide, setupSandboxSide, teardownNetwork, vethExists } from './network.ts';
import { hostNameservers, RESOLV_MARKER, resolvConfText } from './dns.ts';
import { Firewall, type HostPort } from './firewall.ts';
import { buildConfig, buildExecProcess, nofile } from './oci-config.ts';
import { assertOverlaySafe, mountOverlay, seedEtcHosts, seedResolvConf, unmountRootfs } from './rootfs.ts';
import { Runc } from './runc.ts';
import { removeCgroups, removeContainer, removeSandboxDir, teardown } from './teardown.ts';
import { UndoStack } from './undo.ts';
import { bindIdmapped, DEFAULT_IDMAP_HELPER } from './idmap.ts';
import { makeDisk } from './quota.ts';
import { assertStateSpace, isNoSpace } from './state-disk.ts';
import { sweepExecFiles, sweepHost } from './sweep.ts';
import { seccompProfile } from './seccomp.ts';
import { RANGE, readUidBase, UidRanges } from './userns.ts';
import { INIT_PID_FILE } from './runc.ts';
import { TemplateUsers } from './users.ts';
import type { DiskQuotaCapable } from '../../capabilities.ts';
import { agentExec } from './agent/exec.ts';
import { AGENT_SOCKET, createUnderAgent } from './agent/launch.ts';
import { SandboxAgents, type AgentState } from './agent/sandboxes.ts';

export { findLeftovers, findLeftoversByName } from './leftovers.ts';

export type Logger = BackendLogger;

/** Steps of create, in order; named in errors and offered to `hooks.beforeStep`. */
export type CreateStep = 'address' | 'userns' | 'dir' | 'disk' | 'snapshot' | 'overlay' | 'netns' | 'netns-inside' | 'firewall' | 'config' | 'runc-create' | 'runc-start' | 'agent';

/** Where ops/agent/build.sh installs coppice-agent. */
export const DEFAULT_AGENT = '/usr/local/lib/coppice/coppice-agent';

export interface LinuxJailOptions {
  stateDir: string;
  /** Sandbox subnet; the first host address is the gateway. Default `10.78.0.0/24`. */
  subnet?: string;
  /** runc binary. Default `runc`. */
  runc?: string;
  logger?: Logger;
  /** Host path of a static tini, bind-mounted as the sandbox's PID 1. Default `/usr/bin/tini-static`. */
  init?: string;
  /** Host path of a static busybox (PID 1's `sleep`). Default `/bin/busybox`. */
  busybox?: string;
  /** Fault injection for tests: throw from `beforeStep` to make create fail at that step. */
  hooks?: { beforeStep?(step: CreateStep, id: string): void | Promise<void> };
  /**
   * Host ports sandboxes may connect to, the one explicit exception to "a sandbox reaches nothing
   * on the host" (firewall.ts). Default none.
   */
  allowHostPorts?: HostPort[];
  /**
   * User namespace + seccomp + no_new_privs for root (default true). false only for benchmarks
   * comparing the cost (`--jail-hardening=off`): sandbox root is then host root.
   */
  hardening?: boolean;
  /** First host uid of the per-sandbox ranges (65,536 ids each). Default 1,000,000,000. */
  uidBase?: number;
  /** Disk quota when a create names none (MiB). Default 2048. */
  diskMiB?: number;
  /** Largest disk quota a create may ask for (MiB). Default 65536. */
  maxDiskMiB?: number;
  /** The idmapped-mount helper (ops/idmap). Default /usr/local/lib/coppice/coppice-idmap. */
  idmapHelper?: string;
  /**
   * Runtime dir for per-exec process JSON and pid files, off the state disk so exec works while
   * that is full (/run is a tmpfs on a usual host). Default /run/coppice.
   */
  runtimeDir?: string;
  /**
   * coppice-agent as every new sandbox's init, and exec through it (docs/agent.md). 'auto' (the
   * default): on when the binary exists, else off with one warning. 'on' with no binary fails.
   */
  agent?: 'on' | 'off' | 'auto';
  /** The agent binary on the host. Default DEFAULT_AGENT. */
  agentPath?: string;
}

export type LinuxJailBackend = Backend & DiskQuotaCapable & {
  defaultUser(template: Template): string;
  /** The address pool (for re-adoption after restart: `pool.claim(ip)`). */
  readonly pool: AddressPool;
  /** Whether new sandboxes get the agent as their init. */
  readonly agentEnabled: boolean;
  /** A sandbox's agent: connected (exec goes through it), pending, degraded or none (runc exec). */
  agentState(id: string): AgentState;
  /** How many execs went each way since start (tests, diagnostics). */
  readonly execCounts: { agent: number; runc: number };
};

const stderrLogger: Logger = {
  info: () => undefined,
  warn: (o, msg) => process.stderr.write(JSON.stringify({ level: 'warn', ...o, msg }) + '\n'),
};

/** Our own hard RLIMIT_NOFILE: sandboxes cannot get more without CAP_SYS_RESOURCE (see nofile()). */
function hostNofileHard(): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const hard = line?.trim().split(/\s+/)[4];
  return hard === undefined || hard === 'unlimited' ? Infinity : Number(hard) || 1024;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Turn a teardown helper's "what is left" list into a throwing undo, so rollback reports it. */
const mustClear = (fn: () => Promise<string[]>) => async () => {
  const left = await fn();
  if (left.length > 0) throw new Error(`left behind: ${left.join('; ')}`);
};

export async function createLinuxJailBackend(opts: LinuxJailOptions): Promise<LinuxJailBackend> {
  const log = opts.logger ?? stderrLogger;
  const runc = new Runc(opts.runc ?? 'runc');
  const pool = new AddressPool(opts.subnet ?? '10.78.0.0/24');
  const users = new TemplateUsers();
  const hostInit = opts.init ?? '/usr/bin/tini-static';
  const hostBusybox = opts.busybox ?? '/bin/busybox';
  const rlimits = [nofile(hostNofileHard())];
  const hardening = opts.hardening ?? true;
  const idmapHelper = opts.idmapHelper ?? DEFAULT_IDMAP_HELPER;
  const ranges = new UidRanges(opts.uidBase ?? 1_000_000_000);
  const seccomp = hardening ? seccompProfile() : undefined;
  const defaultDiskMiB = opts.diskMiB ?? 2048;
  const maxDiskMiB = opts.maxDiskMiB ?? 65_536;
  if (hardening && !existsSync(idmapHelper)) {
    throw backendFailed(`jail/linux: ${idmapHelper} is missing (sh ops/idmap/build.sh, run by ops/setup.sh)`);
  }
  const agentPath = opts.agentPath ?? DEFAULT_AGENT;
  const agentMode = opts.agent ?? 'auto';
  const useAgent = agentMode !== 'off' && existsSync(agentPath);
  if (agentMode === 'on' && !useAgent) throw backendFailed(`jail/linux: ${agentPath} is missing (sh ops/agent/build.sh, run by ops/setup.sh)`);
  if (agentMode === 'auto' && !useAgent) log.warn({ agent: agentPath }, 'coppice-agent not installed: jail sandboxes start with tini and exec through runc exec');
  const agents = new SandboxAgents(log);
  const execCounts = { agent: 0, runc: 0 };
  if (!useAgent) {
    for (const p of [hostInit, hostBusybox]) {
      if (!existsSync(p)) throw backendFailed(`jail/linux: ${p} is missing (apt install tini busybox-static)`);
    }
  }
  await mkdir(join(opts.stateDir, 'sandboxes'), { recursive: true, mode: 0o700 });
  const execDir = join(opts.runtimeDir ?? '/run/coppice', 'exec');
  await mkdir(execDir, { recursive: true, mode: 0o700 });
  if (hardening) {
    for (const d of [opts.stateDir, join(opts.stateDir, 'sandboxes')]) chmodSync(d, statSync(d).mode & 0o7777 | 0o111);
  }
  await removePartialSnapshots(opts.stateDir);
  await ensureNetnsDir();
  // Network isolation: the nft table exists before any sandbox does, and outlives none (close()).
  const firewall = await Firewall.open({ subnet: opts.subnet ?? '10.78.0.0/24', allowHostPorts: opts.allowHostPorts, logger: log }).catch((e) => {
    throw backendFailed(`jail/linux: network isolation (nftables): ${message(e)}`, e);
  });

  const busy = new Set<string>(); // ids with a create in flight or live in this process
  const names = (id: string) => sandboxNames(opts.stateDir, id);
  // Objects no container can own any more (a crash mid-create or mid-destroy): netns, veths, cgroups,
  // loop devices, nft elements of ids without a container or dir; sandbox dirs are reconcile's.
  const startSweep = await sweepHost({ stateDir: opts.stateDir, runc, firewall, skip: () => false, includeOwned: false });
  if (startSweep.swept.length > 0) log.warn({ ...startSweep }, 'leftovers of earlier runs removed');
  sweepExecFiles(execDir);
  // Ranges of live containers (a restart): reserved before any create can hand them out again.
  const mine = join(opts.stateDir, 'sandboxes') + '/';
  for (const c of await runc.list().catch(() => [])) {
    if (!c.id.startsWith(PREFIX) || !c.bundle?.startsWith(mine) || !(c.pid > 0)) continue;
    const base = readUidBase(c.pid);
    if (base !== null) {
      try {
        ranges.claim(c.id.slice(PREFIX.length), base);
      } catch (e) {
        log.warn({ container: c.id, base, err: message(e) }, 'uid range of a live container not reclaimed');
      }
    }
  }

  async function createSteps(spec: CreateSpec, n: SandboxNames, undo: UndoStack, at: (s: CreateStep) => Promise<void>, diskMiB: number, signal?: AbortSignal) {
    await at('address');
    const ip = pool.allocate();
    // A leaked host veth keeps its /32 route; handing the address out again would fail the next create.
    undo.push('address', () => {
      if (vethExists(n.vethHost)) throw new Error(`address ${ip} quarantined: ${n.vethHost} still exists`);
      pool.release(ip);
    });
    const net = { ip, gateway: pool.gateway, prefix: pool.prefix };

    await at('userns');
    const uidBase = hardening ? ranges.allocate(n.id) : 0;
    undo.push('userns', () => ranges.release(n.id));

    await at('dir');
    try {
      await mkdir(n.dir); // not recursive: EEXIST means another sandbox (or a leak) owns this id
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw conflict(`sandbox ${n.id} already exists on this host (${n.dir})`);
      throw e;
    }
    undo.push('dir', mustClear(() => removeSandboxDir(n)));
    await Promise.all([mkdir(n.rootfs), mkdir(n.lower)]);
    // runc mounts the rootfs from inside the user namespace: its root (a host uid of the range) must
    // traverse the path. Only that group may enter the sandbox dir (0710); parents are 0711 (search only).
    if (hardening) {
      chownSync(n.dir, 0, uidBase);
      chmodSync(n.dir, 0o710);
    }
    const tplStat = statSync(spec.template.path, { throwIfNoEntry: false });

    // The writable layer on its own image of diskMiB (quota.ts); removed with the dir (unmounted first).
    await at('disk');
    await makeDisk(n.diskImage, n.disk, diskMiB, signal);
    await Promise.all([mkdir(n.upper), mkdir(n.work)]);
    // The upper dir's owner is the merged root's: the template root's, shifted into the range.
    // <dir>/upper keeps naming the writable layer on the host (ops, tests), as before the disk image.
    symlinkSync('disk/upper', join(n.dir, 'upper'));
    if (tplStat?.isDirectory()) chownSync(n.upper, tplStat.uid + uidBase, tplStat.gid + uidBase);

    if (spec.fromSnapshot) {
      await at('snapshot');
      await seedUpper(opts.stateDir, spec.fromSnapshot.snapshotID, n.upper, spec.fromSnapshot.consume ?? false, { base: uidBase, helper: idmapHelper, scratch: join(n.dir, 'seed-view') });
    }

    await at('overlay');
    if (!tplStat?.isDirectory()) throw new Error(`template directory ${spec.template.path} does not exist`);
    undo.push('overlay', mustClear(() => unmountRootfs(n)));
    // With a user namespace the template is seen through an idmapped view (idmap.ts): no copy, no chown.
    const lower = hardening ? n.lower : spec.template.path;
    if (hardening) await bindIdmapped(idmapHelper, 0, uidBase, spec.template.path, n.lower, signal);
    await seedEtcHosts(n, lower, ip, uidBase);
    if (spec.internet) {
      const ns = hostNameservers();
      if (ns.length > 0) await seedResolvConf(n, resolvConfText(ns), RESOLV_MARKER, uidBase);
    } else {
      // No egress: the resolver is the sandbox's gateway address, where the firewall refuses DNS
      // at once (ICMP port unreachable / TCP reset). The template's own nameserver would be
      // routed off the host and silently dropped: every lookup would wait out its timeouts.
      await seedResolvConf(n, resolvConfText([pool.gateway]), RESOLV_MARKER, uidBase);
    }
    await mountOverlay(n, lower, signal);

    // runc makes the netns (with the user namespace, so it is owned by it: sysfs inside needs that);
    // it is named and wired between `runc create` and `runc start`, before any sandbox code runs.
    await at('config');
    const config = buildConfig({
      id: n.id,
      cgroupsPath: n.cgroupsPath,
      limits: spec.limits,
      ...(useAgent ? { hostAgent: agentPath } : { hostInit, hostBusybox }),
      rlimits,
      ...(hardening ? { userns: { hostBase: uidBase, size: RANGE }, seccomp } : {}),
    });
    writeFileSync(join(n.dir, 'config.json'), JSON.stringify(config, null, 2), { mode: 0o600 });

    await at('runc-create');
    undo.push('runc', mustClear(async () => [...(await removeContainer(runc, n)), ...(await removeCgroups(n))]));
    if (useAgent) await createUnderAgent({ runc: runc.bin, agent: agentPath, container: n.container, bundle: n.dir, signal });
    else await runc.create(n.container, n.dir, signal);
    const initPid = Number(readFileSync(join(n.dir, INIT_PID_FILE), 'utf8').trim());

    await at('netns');
    undo.push('netns', mustClear(() => teardownNetwork(n)));
    await setupHostSide(n, net, signal, initPid);
    await at('netns-inside');
    await setupSandboxSide(n, net, signal);

    await at('firewall');
    undo.push('firewall', mustClear(() => firewall.unregister(n.vethHost, ip)));
    await firewall.register(n.vethHost, ip, spec.internet === true);

    await at('runc-start');
    await runc.start(n.container, signal);

    if (useAgent) {
      await at('agent');
      undo.push('agent', () => agents.forget(n.id));
      await agents.connect(n.id, join(n.dir, AGENT_SOCKET), true);
    }
    return { ip, uidBase };
  }

  const backend: LinuxJailBackend = {
    defaultDiskMiB,
    kind: 'jail',
    pool,
    agentEnabled: useAgent,
    agentState: (id: string) => agents.state(id),
    execCounts,

    async create(spec: CreateSpec, signal?: AbortSignal): Promise<SandboxHandle> {
      assertId(spec.id);
      assertOverlaySafe(spec.template.path);
      if (spec.template.backend !== 'jail') throw badRequest('template', `${spec.template.name} is not a jail template`);
      for (const k of ['memoryMiB', 'cpus', 'pids'] as const) {
        const v = spec.limits[k];
        if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw badRequest(`limits.${k}`, 'must be a positive number');
      }
      const diskMiB = spec.limits.diskMiB ?? defaultDiskMiB;
      if (!(Number.isInteger(diskMiB) && diskMiB >= 16 && diskMiB <= maxDiskMiB)) {
        throw badRequest('limits.diskMiB', `must be a whole number of MiB between 16 and ${maxDiskMiB}`);
      }
      if (busy.has(spec.id)) throw conflict(`sandbox ${spec.id} already exists`);
      assertStateSpace(opts.stateDir);
      if (spec.fromSnapshot) {
        const snap = await readSnapshot(opts.stateDir, spec.fromSnapshot.snapshotID);
        if (!snap) throw notFound(`snapshot "${spec.fromSnapshot.snapshotID}"`);
        if (snap.template !== spec.template.name) {
          throw badRequest('templateID', `snapshot ${snap.snapshotID} was taken from template ${snap.template}, not ${spec.template.name}`);
        }
      }
      busy.add(spec.id);
      const n = names(spec.id);
      const undo = new UndoStack();
      let step: CreateStep = 'address';
      const at = async (s: CreateStep) => {
        step = s;
        signal?.throwIfAborted();
        await opts.hooks?.beforeStep?.(s, spec.id);
      };
      const t0 = performance.now();
      try {
        const { ip, uidBase } = await createSteps(spec, n, undo, at, diskMiB, signal);
        undo.commit();
        log.info({ id: spec.id, ip, ms: Math.round(performance.now() - t0) }, 'jail sandbox created');
        return {
          id: spec.id,
          backend: 'jail',
          template: spec.template.name,
          ip,
          data: {
            container: n.container,
            netns: n.netns,
            vethHost: n.vethHost,
            dir: n.dir,
            templatePath: spec.template.path,
            egress: spec.internet === true,
            // The effective quota (E2B diskSizeMB) and the sandbox's host uid range (0 = no user namespace).
            diskMiB,
            uidBase,
          },
        };
      } catch (err) {
        const failures = await undo.rollback();
        busy.delete(spec.id);
        if (failures.length > 0) {
          log.warn({ id: spec.id, step, failures: failures.map((f) => `${f.step}: ${message(f.error)}`) }, 'create rollback incomplete');
        }
        const rollbackNote = failures.length > 0 ? ` (rollback incomplete: ${failures.map((f) => f.step).join(', ')})` : '';
        if (signal?.aborted) {
          if (signal.reason instanceof CoppiceError) throw signal.reason;
          throw backendFailed(`create ${spec.id} aborted at step "${step}"${rollbackNote}`, signal.reason);
        }
        const text = `create ${spec.id} failed at step "${step}": ${message(err)}${rollbackNote}`;
        if (isNoSpace(err)) throw insufficientStorage(`${text} (the gateway's state disk is full)`, err);
        if (err instanceof CoppiceError) throw new CoppiceError(err.code, text, { field: err.field, cause: err });
        throw backendFailed(text, err);
      }
    },

    async destroy(handle: SandboxHandle): Promise<void> {
      const n = names(handle.id);
      agents.forget(handle.id); // before the kill: its connection ending is no degradation
      const { left, addressReusable } = await teardown(runc, n);
      rmSync(join(n.dir, AGENT_SOCKET), { force: true }); // gone with the dir, unless the dir was left
      left.push(...(await firewall.unregister(n.vethHost, handle.ip)));
      // The uid range is free once no process of the sandbox can be left (its container is gone).
      if (!left.some((l) => l.startsWith('runc container'))) ranges.release(handle.id);
      if (addressReusable) pool.release(handle.ip);
      else log.warn({ id: handle.id, ip: handle.ip }, 'address quarantined: host veth could not be removed');
      if (left.length > 0) log.warn({ id: handle.id, left }, 'sandbox teardown left objects behind');
      busy.delete(handle.id);
    },

    exec(handle: SandboxHandle, spec: ExecSpec): ExecProcess {
      if (!Array.isArray(spec.argv) || spec.argv.length === 0) throw badRequest('argv', 'must be a non-empty array');
      const templatePath = handle.data.templatePath;
      if (typeof templatePath !== 'string') throw backendFailed(`sandbox ${handle.id}: handle has no templatePath`);
      const n = names(handle.id);
      const userName = spec.user ?? (users.has(templatePath, 'user') ? 'user' : 'root');
      const user = users.resolve(templatePath, userName);
      const client = agents.client(handle.id);
      if (client) {
        const p = agentExec(client, { argv: spec.argv, env: spec.env, cwd: spec.cwd, user, pty: spec.pty });
        agents.track(handle.id, p.started);
        execCounts.agent++;
        return p;
      }
      // No agent (off, adopted from a gateway without one) or its connection is gone (degraded).
      if (spec.pty) throw new CoppiceError('unsupported', `pty: sandbox ${handle.id} has no agent (runc exec fallback): no terminal`, { field: 'pty' });
      execCounts.runc++;
      const proc = buildExecProcess({ argv: spec.argv, env: spec.env, cwd: spec.cwd, user, rlimits, noNewPrivileges: hardening && user.uid === 0 });
      if (!existsSync(n.dir)) throw notFound(`sandbox ${handle.id}`);
      try {
        return startExec({ runc: runc.bin, container: n.container, dir: execDir, process: proc });
      } catch (e) {
        throw backendFailed(`exec in ${handle.id}: ${message(e)}`, e);
      }
    },

    async pause(handle: SandboxHandle): Promise<void> {
      try {
        await agents.settleStarts(handle.id); // an exec accepted just before runs before the freeze
        await freeze(freezerStatePath(handle.id));
      } catch (e) {
        throw backendFailed(`pause ${handle.id}: ${message(e)}`, e);
      }
    },

    async resume(handle: SandboxHandle): Promise<void> {
      try {
        await thaw(freezerStatePath(handle.id));
      } catch (e) {
        throw backendFailed(`resume ${handle.id}: ${message(e)}`, e);
      }
      // Adopted while frozen: its agent could not answer until now.
      if (agents.state(handle.id) === 'pending') await agents.connect(handle.id, join(names(handle.id).dir, AGENT_SOCKET), false);
    },

    async snapshot(handle: SandboxHandle, snapshotID: string): Promise<SnapshotRecord> {
      if (!SNAPSHOT_ID.test(snapshotID)) throw badRequest('snapshotID', 'must be snap-<10 chars [a-z0-9]>');
      const n = names(handle.id);
      const freezer = freezerStatePath(handle.id);
      // Frozen during the copy so the files are consistent; a paused sandbox stays paused.
      const wasFrozen = (await readFreezer(freezer).catch(() => 'THAWED')) === 'FROZEN';
      let frozeIt = false;
      try {
        if (!wasFrozen) {
          await agents.settleStarts(handle.id);
          await freeze(freezer);
          frozeIt = true;
        }
        return await writeSnapshot(opts.stateDir, n.upper, {
          snapshotID,
          uidBase: typeof handle.data.uidBase === 'number' ? handle.data.uidBase : 0,
          sandboxID: handle.id,
          template: handle.template,
          backend: 'jail',
          createdAt: new Date().toISOString(),
        });
      } catch (e) {
        throw backendFailed(`snapshot of ${handle.id}: ${message(e)}`, e);
      } finally {
        if (frozeIt) await thaw(freezer).catch((e) => log.warn({ id: handle.id, err: message(e) }, 'thaw after snapshot failed'));
      }
    },

    async adopt(handle: SandboxHandle): Promise<void> {
      assertId(handle.id);
      busy.add(handle.id);
      try {
        pool.claim(handle.ip);
      } catch (e) {
        busy.delete(handle.id);
        throw e;
      }
      // Normally reclaimed at start from the live init's uid_map; a record's range must agree.
      const base = handle.data.uidBase;
      if (typeof base === 'number' && base > 0 && ranges.baseOf(handle.id) !== base) {
        try {
          ranges.claim(handle.id, base);
        } catch (e) {
          pool.release(handle.ip);
          busy.delete(handle.id);
          throw backendFailed(`adopt ${handle.id}: ${message(e)}`, e);
        }
      }
      try {
        // Normally still there (the table outlives a SIGKILL); re-adding is a no-op then. The group
        // matters for a veth made by a gateway version without the firewall.
        await setSandboxGroup(names(handle.id));
        await firewall.register(names(handle.id).vethHost, handle.ip, handle.data.egress === true);
      } catch (e) {
        pool.release(handle.ip);
        busy.delete(handle.id);
        throw backendFailed(`adopt ${handle.id}: firewall: ${message(e)}`, e);
      }
      // Reconnect to its agent (the newest connection wins over the dead gateway's). A frozen agent
      // cannot say HELLO: connect at resume. Never fails the adoption: without it, runc exec.
      if (useAgent) {
        const sock = join(names(handle.id).dir, AGENT_SOCKET);
        const frozen = (await readFreezer(freezerStatePath(handle.id)).catch(() => 'THAWED')) !== 'THAWED';
        if (frozen) agents.expect(handle.id, sock);
        else await agents.connect(handle.id, sock, false);
      }
    },

    deleteSnapshot: (snapshotID: string) => deleteSnapshot(opts.stateDir, snapshotID),
    listSnapshots: () => listSnapshots(opts.stateDir),

    async listLive(): Promise<LiveSandbox[]> {
      const all = await runc.list();
      // Only this gateway's: its bundles live under its state dir (other gateways on the host,
      // with other state dirs, are none of its business).
      const mine = join(opts.stateDir, 'sandboxes') + '/';
      const live: LiveSandbox[] = all
        .filter((c) => c.id.startsWith(PREFIX) && typeof c.bundle === 'string' && c.bundle.startsWith(mine))
        .map((c) => ({
          id: c.id.slice(PREFIX.length),
          state: c.status === 'running' ? 'running' : c.status === 'paused' ? 'paused' : 'unknown',
        }));
      // A sandbox dir without a container is residue of a create or destroy cut short (crash).
      const known = new Set(live.map((l) => l.id));
      for (const id of readdirSync(join(opts.stateDir, 'sandboxes'))) {
        if (!known.has(id) && ID_RE.test(id)) live.push({ id, state: 'unknown' });
      }
      return live;
    },

    async sweep() {
      const r = await sweepHost({ stateDir: opts.stateDir, runc, firewall, skip: (id) => busy.has(id), includeOwned: true });
      for (const id of r.swept) ranges.release(id);
      sweepExecFiles(execDir);
      return r;
    },

    defaultUser(template: Template): string {
      return users.has(template.path, 'user') ? 'user' : 'root';
    },

    async close(): Promise<void> {
      // Every sandbox object is per sandbox and owned by its actor's destroy(); the one host-wide
      // thing is the nft table (kept if sandbox veths still exist: see firewall.ts).
      users.clear();
      agents.closeAll();
      await firewall.close();
    },
  };
  return backend;
}
