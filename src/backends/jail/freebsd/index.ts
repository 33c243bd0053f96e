// The jail backend's FreeBSD driver: zfs clone + epair/bridge + VNET jail + rctl (DESIGN.md
// "Backends"). UNTESTED ON REAL FREEBSD: there is no FreeBSD host here. Every host command goes
// through an injected CommandRunner, and test/unit/freebsd-driver.test.ts asserts the exact
// command plan against a recording runner. This file only sequences; commands live in commands.ts.
import { setTimeout as sleepMs } from 'node:timers/promises';
import type { BackendLogger } from '../../types.ts';
import { CoppiceError, backendFailed, badRequest, conflict, notFound } from '../../../errors.ts';
import type { Backend, CreateSpec, ExecProcess, ExecSpec, LiveSandbox, SandboxHandle, SnapshotRecord, Template } from '../../types.ts';
import { AddressPool } from '../address-pool.ts';
import { UndoStack } from '../linux/undo.ts';
import { TemplateUsers } from '../linux/users.ts';
import { GONE, jail } from './commands.ts';
import { createSteps, type CreateStep } from './create.ts';
import { execArgv, startExec } from './exec.ts';
import { continueAll, stopAll, type FreezeOptions } from './freeze.ts';
import { assertId, assertLayout, ID_RE, JAIL_PREFIX, parseSnapshotDataset, sandboxNames, templateOrigin, type Layout } from './names.ts';
import { parseJid, parseJls } from './parse.ts';
import { CommandFailed, ExecFileRunner, check, type CommandRunner } from './runner.ts';
import { deleteSnapshot, findSnapshot, listSnapshotRows, takeSnapshot, toRecord } from './snapshot.ts';
import { reapRetired, teardown } from './teardown.ts';

export type { CommandRunner } from './runner.ts';

export type Logger = BackendLogger;

export interface FreebsdJailOptions {
  /** Default: the real execFile/spawn runner. Tests pass a RecordingRunner. */
  runner?: CommandRunner;
  /** Dataset holding `templates/<name>` and `sandboxes/<id>`. Default `zroot/coppice`. */
  dataset?: string;
  /** Where sandbox datasets are mounted (`<jailsDir>/<id>`). Default `/var/lib/coppice/jails`. */
  jailsDir?: string;
  /** Template snapshot that sandboxes are cloned from. Default `base`. */
  templateSnapshot?: string;
  /** if_bridge carrying the subnet's gateway address. Default `coppice0`. */
  bridge?: string;
  /** Default `10.78.0.0/24`; its first host address (the bridge's) is every sandbox's default route. */
  subnet?: string;
  /** devfs ruleset for the jail's /dev. Default 4 (devfsrules_jail). */
  devfsRuleset?: number;
  /** Pause between `jail -r` and `ifconfig ... destroy` (pot sleeps ~1 s for an epair race). Default 1000. */
  epairSettleMs?: number;
  /** Stop/check rounds for pause and snapshot (freeze.ts). Default 50. */
  freezeRounds?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => Date;
  logger?: Logger;
}

/**
 * Backend plus the snapshot operations (required here, optional in Backend). `create` with
 * `spec.fromSnapshot` clones that snapshot instead of the template; `forkFrom` is the same thing
 * spelled as in the FreeBSD brief. `consume` needs no work on ZFS: the gateway deletes a fork's
 * snapshot right after, which defers its destruction until the fork (its clone) is destroyed.
 */
export type FreebsdJailBackend = Backend & {
  readonly pool: AddressPool;
  readonly layout: Layout;
  defaultUser(template: Template): string;
  /** Freeze the jail's processes, `zfs snapshot`, continue (a paused sandbox stays paused). */
  snapshot(handle: SandboxHandle, snapshotID: string): Promise<SnapshotRecord>;
  /** A new sandbox (spec.id, own address, own limits) whose files are the snapshot's. */
  forkFrom(snapshot: SnapshotRecord, spec: CreateSpec, signal?: AbortSignal): Promise<SandboxHandle>;
  /** Deferred `zfs destroy -d`: sandboxes made from it keep working. Unknown ids are a no-op. */
  deleteSnapshot(snapshotID: string): Promise<void>;
  listSnapshots(): Promise<SnapshotRecord[]>;
};

const noop: Logger = { info: () => undefined, warn: () => undefined };
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
const rethrow = (op: string, e: unknown): never => {
  if (e instanceof CoppiceError) throw e;
  throw backendFailed(`${op}: ${message(e)}`, e);
};

export function createFreebsdJailBackend(opts: FreebsdJailOptions = {}): FreebsdJailBackend {
  const runner = opts.runner ?? new ExecFileRunner();
  const log = opts.logger ?? noop;
  const sleep = opts.sleep ?? ((ms: number) => sleepMs(ms));
  const now = opts.now ?? (() => new Date());
  const layout: Layout = {
    root: opts.dataset ?? 'zroot/coppice',
    jailsDir: opts.jailsDir ?? '/var/lib/coppice/jails',
    templateSnapshot: opts.templateSnapshot ?? 'base',
  };
  assertLayout(layout);
  const bridge = opts.bridge ?? 'coppice0';
  if (!/^[A-Za-z][A-Za-z0-9]{0,14}$/.test(bridge)) throw new Error(`jail/freebsd: bad bridge name ${bridge}`);
  const pool = new AddressPool(opts.subnet ?? '10.78.0.0/24');
  const ctx = { runner, pool, bridge, jailParams: { devfsRuleset: opts.devfsRuleset ?? 4 } };
  const freeze: FreezeOptions = { rounds: opts.freezeRounds, sleep };
  const settleMs = opts.epairSettleMs ?? 1000;
  const users = new TemplateUsers();
  const busy = new Set<string>(); // ids with a create in flight or live in this process
  const paused = new Set<string>();
  const names = (id: string) => sandboxNames(layout, id);

  function validate(spec: CreateSpec): void {
    assertId(spec.id);
    if (spec.template.backend !== 'jail') throw badRequest('template', `${spec.template.name} is not a jail template`);
    for (const k of ['memoryMiB', 'cpus', 'pids'] as const) {
      const v = spec.limits[k];
      if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw badRequest(`limits.${k}`, 'must be a positive number');
    }
  }

  /** What the new sandbox's dataset is cloned from: the template's snapshot, or a sandbox snapshot. */
  async function originOf(spec: CreateSpec): Promise<string> {
    if (!spec.fromSnapshot) return templateOrigin(layout, spec.template);
    const id = spec.fromSnapshot.snapshotID;
    const row = await findSnapshot(runner, layout, id);
    if (!row) throw notFound(`snapshot "${id}"`);
    if (row.template !== spec.template.name) {
      throw badRequest('template', `snapshot ${id} belongs to template ${row.template}, not ${spec.template.name}`);
    }
    return row.dataset;
  }

  async function build(spec: CreateSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    validate(spec);
    if (busy.has(spec.id)) throw conflict(`sandbox ${spec.id} already exists`);
    busy.add(spec.id);
    let origin: string;
    try {
      origin = await originOf(spec);
    } catch (e) {
      busy.delete(spec.id);
      throw e;
    }
    const fork = spec.fromSnapshot?.snapshotID ?? null;
    const n = names(spec.id);
    const undo = new UndoStack();
    let step = 'address' as CreateStep; // assigned by at() inside createSteps
    const at = (s: CreateStep) => {
      step = s;
      signal?.throwIfAborted();
    };
    try {
      const { ip, jid } = await createSteps(ctx, n, origin, spec.limits, undo, at, signal);
      undo.commit();
      log.info({ id: spec.id, ip, jid, origin }, fork ? 'jail sandbox forked' : 'jail sandbox created');
      return {
        id: spec.id,
        backend: 'jail',
        template: spec.template.name,
        ip,
        data: { jail: n.jail, jid, dataset: n.dataset, mountpoint: n.mountpoint, ifA: n.ifA, origin, templatePath: spec.template.path },
      };
    } catch (err) {
      const failures = await undo.rollback();
      busy.delete(spec.id);
      if (failures.length > 0) {
        log.warn({ id: spec.id, step, failures: failures.map((f) => `${f.step}: ${message(f.error)}`) }, 'create rollback incomplete');
      }
      const note = failures.length > 0 ? ` (rollback incomplete: ${failures.map((f) => f.step).join(', ')})` : '';
      if (signal?.aborted) {
        if (signal.reason instanceof CoppiceError) throw signal.reason;
        throw backendFailed(`create ${spec.id} aborted at step "${step}"${note}`, signal.reason);
      }
      if (fork && step === 'clone' && err instanceof CommandFailed && GONE.zfs.test(err.result.stderr)) {
        throw notFound(`snapshot "${fork}"`);
      }
      const text = `create ${spec.id} failed at step "${step}": ${message(err)}${note}`;
      if (err instanceof CoppiceError) throw new CoppiceError(err.code, text, { field: err.field, cause: err });
      throw backendFailed(text, err);
    }
  }

  /** The jid recorded at create, or looked up by name (a handle from before a restart). */
  async function jidOf(handle: SandboxHandle): Promise<number> {
    if (typeof handle.data.jid === 'number') return handle.data.jid;
    assertId(handle.id);
    const res = await runner.run(jail.jidOf(names(handle.id)));
    if (res.code !== 0) throw notFound(`sandbox ${handle.id}`);
    return parseJid(res.stdout);
  }

  const userFor = (handle: SandboxHandle): string => {
    const p = handle.data.templatePath;
    return typeof p === 'string' && users.has(p, 'user') ? 'user' : 'root';
  };

  const backend: FreebsdJailBackend = {
    kind: 'jail',
    pool,
    layout,

    create: build,

    async forkFrom(snapshot: SnapshotRecord, spec: CreateSpec, signal?: AbortSignal): Promise<SandboxHandle> {
      if (snapshot.backend !== 'jail') throw badRequest('snapshotID', `${snapshot.snapshotID} is not a jail snapshot`);
      return build({ ...spec, fromSnapshot: { snapshotID: snapshot.snapshotID } }, signal);
    },

    async destroy(handle: SandboxHandle): Promise<void> {
      assertId(handle.id);
      const n = names(handle.id);
      const { left, jailGone, retired } = await teardown(runner, n, () => (settleMs > 0 ? sleep(settleMs) : Promise.resolve()));
      if (jailGone) pool.release(handle.ip);
      else log.warn({ id: handle.id, ip: handle.ip }, 'address quarantined: jail could not be removed');
      if (left.length > 0) log.warn({ id: handle.id, left }, 'sandbox teardown left objects behind');
      if (retired) log.info({ id: handle.id, dataset: n.dataset }, 'dataset retired: snapshots of it still exist');
      // A fork may have been the last clone of a deleted snapshot of a destroyed sandbox: reap that one.
      const origin = typeof handle.data.origin === 'string' ? parseSnapshotDataset(layout, handle.data.origin) : null;
      if (origin && left.length === 0) {
        const reaped = await reapRetired(runner, layout, names(origin.sandboxId).dataset);
        if (reaped.length > 0) log.info({ id: handle.id, reaped }, 'retired datasets reaped');
      }
      paused.delete(handle.id);
      busy.delete(handle.id);
    },

    exec(handle: SandboxHandle, spec: ExecSpec): ExecProcess {
      assertId(handle.id);
      if (spec.pty) throw new CoppiceError('unsupported', 'pty: not supported on the FreeBSD jail backend v1', { field: 'pty' });
      const argv = execArgv(names(handle.id).jail, spec.user ?? userFor(handle), spec);
      return startExec(runner, argv, handle.id);
    },

    async pause(handle: SandboxHandle): Promise<void> {
      try {
        await stopAll(runner, await jidOf(handle), freeze);
        paused.add(handle.id);
      } catch (e) {
        rethrow(`pause ${handle.id}`, e);
      }
    },

    async resume(handle: SandboxHandle): Promise<void> {
      try {
        await continueAll(runner, await jidOf(handle));
        paused.delete(handle.id);
      } catch (e) {
        rethrow(`resume ${handle.id}`, e);
      }
    },

    async snapshot(handle: SandboxHandle, snapshotID: string): Promise<SnapshotRecord> {
      try {
        assertId(handle.id);
        return await takeSnapshot({
          runner, layout, names: names(handle.id), jid: await jidOf(handle), snapshotID,
          template: handle.template, createdAt: now().toISOString(), alreadyStopped: paused.has(handle.id), freeze,
        });
      } catch (e) {
        if (e instanceof CommandFailed && /already exists/i.test(e.result.stderr)) throw conflict(`snapshot ${snapshotID} already exists`);
        return rethrow(`snapshot ${handle.id}`, e);
      }
    },

    async deleteSnapshot(snapshotID: string): Promise<void> {
      try {
        const { dataset, reaped } = await deleteSnapshot(runner, layout, snapshotID);
        if (dataset) log.info({ snapshot: snapshotID, dataset, reaped }, 'snapshot deleted');
      } catch (e) {
        rethrow(`delete snapshot ${snapshotID}`, e);
      }
    },

    async listSnapshots(): Promise<SnapshotRecord[]> {
      try {
        return (await listSnapshotRows(runner, layout)).map(toRecord);
      } catch (e) {
        return rethrow('list snapshots', e);
      }
    },

    async listLive(): Promise<LiveSandbox[]> {
      const { stdout } = await check(runner, jail.list()).catch((e: unknown) => rethrow('list jails', e));
      return parseJls(stdout)
        .filter((j) => j.name.startsWith(JAIL_PREFIX) && ID_RE.test(j.name.slice(JAIL_PREFIX.length)))
        .map((j) => {
          const id = j.name.slice(JAIL_PREFIX.length);
          // A jail that exists is alive; "paused" is only known for what this process stopped (no
          // freezer file on FreeBSD), so after a restart a stopped jail is re-adopted as running
          // and a resume (SIGCONT) heals it. Documented limit.
          const state: LiveSandbox['state'] = paused.has(id) ? 'paused' : 'running';
          return { id, state };
        });
    },

    defaultUser(template: Template): string {
      return users.has(template.path, 'user') ? 'user' : 'root';
    },

    async close(): Promise<void> {
      users.clear(); // every host object is per sandbox and owned by its actor's destroy()
    },
  };
  return backend;
}
