// The bhyve Backend: pool-ctl hands out a ready guest, the SSH shim runs commands in it.
// Snapshot/fork are not part of the Backend interface yet; when they are, they answer
// unsupported(op, 'bhyve') ("… not supported on bhyve backend v1").
import { backendFailed, CoppiceError, notFound, unsupported } from '../../errors.ts';
import type { BackendLogger } from '../types.ts';
import { DEFAULT_LIMITS, type Backend, type CreateSpec, type ExecProcess, type ExecSpec, type LiveSandbox, type SandboxHandle } from '../types.ts';
import { PoolCtlClient, type PoolCtlOptions, type PoolList } from './pool-ctl.ts';
import { DEFAULT_POOL_KEY, GuestConnection } from './ssh.ts';

export type BhyveLogger = BackendLogger;

export interface BhyveBackendOptions {
  poolCtl: PoolCtlClient | PoolCtlOptions;
  /** Private half of the pool key (the seed's /root/coppice-signing/pool-key). */
  keyPath?: string;
  logger?: BhyveLogger;
  /** Called after each successful pool-ctl checkout with its wall time (for coppice_bhyve_checkout_ns). */
  onCheckout?: (template: string, ns: bigint) => void;
  /** SSH handshake deadline (the seed's ConnectTimeout=5). */
  sshReadyTimeoutMs?: number;
}

export interface BhyveBackend extends Backend {
  readonly kind: 'bhyve';
  readonly poolCtl: PoolCtlClient;
  warm(template: string, count: number, onProgress?: (line: string) => void, signal?: AbortSignal): Promise<{ template: string; available: number }>;
  drain(template: string, signal?: AbortSignal): Promise<void>;
  /** pool-ctl list --json, for the coppice_bhyve_pool_* gauges and GET /pool. */
  pool(signal?: AbortSignal): Promise<PoolList>;
}

const noopLogger: BhyveLogger = { info() {}, warn() {} };

function vmOf(handle: SandboxHandle): string {
  const vm = handle.data.vm;
  if (typeof vm !== 'string' || vm === '') throw backendFailed(`bhyve sandbox ${handle.id}: handle has no vm`);
  return vm;
}

export function createBhyveBackend(opts: BhyveBackendOptions): BhyveBackend {
  const pool = opts.poolCtl instanceof PoolCtlClient ? opts.poolCtl : new PoolCtlClient(opts.poolCtl);
  const log = opts.logger ?? noopLogger;
  const keyPath = opts.keyPath ?? DEFAULT_POOL_KEY;
  // sandbox id -> its connection. A guest's connection is kept across pause/resume: the host end
  // just sees an idle TCP connection, and the guest's stack carries on after SIGCONT.
  const conns = new Map<string, GuestConnection>();

  // Only sandboxes created (and not destroyed) by this backend have a connection. No lazy dialling
  // from a bare handle: after release the address goes back to the pool, and a stale handle
  // would reach somebody else's guest.
  const connFor = (handle: SandboxHandle): GuestConnection => {
    const c = conns.get(handle.id);
    if (!c) throw notFound(`bhyve sandbox ${handle.id}`);
    return c;
  };

  /** Give back a guest we hold but cannot hand out; a failure here is logged, the original error wins. */
  const releaseQuietly = async (vm: string, why: string) => {
    try {
      await pool.release(vm);
      log.info({ vm, why }, 'bhyve: released guest after failed create');
    } catch (err) {
      log.warn({ vm, why, err: (err as Error).message }, 'bhyve: could not release guest after failed create');
    }
  };

  /**
   * checkout failed in a way that may still have taken a guest (killed after marking it in use,
   * garbage printed after the fact): find guests recorded under our sandbox id and release them.
   */
  const releaseOrphans = async (owner: string) => {
    try {
      const l = await pool.list();
      for (const v of l.vms) if (v.owner === owner) await releaseQuietly(v.vm, 'checkout failed after taking a guest');
    } catch (err) {
      log.warn({ owner, err: (err as Error).message }, 'bhyve: could not look for guests of a failed checkout');
    }
  };

  return {
    kind: 'bhyve',
    poolCtl: pool,

    async create(spec: CreateSpec, signal?: AbortSignal): Promise<SandboxHandle> {
      const template = spec.template.name;
      // A pre-booted guest has the memory and vCPUs it was booted with, and no per-guest egress:
      // a create asking otherwise is refused (the seed's rule), never accepted and ignored.
      const l = spec.limits;
      if (l.memoryMiB !== DEFAULT_LIMITS.memoryMiB || l.cpus !== DEFAULT_LIMITS.cpus || l.pids !== DEFAULT_LIMITS.pids || l.diskMiB !== undefined) {
        throw unsupported('limits', 'bhyve');
      }
      if (spec.internet) throw unsupported('allow_internet_access', 'bhyve');
      const t0 = process.hrtime.bigint();
      let co;
      try {
        co = await pool.checkout(template, { owner: spec.id, signal });
      } catch (err) {
        // "pool empty" took nothing; anything else might have.
        if (!(err instanceof CoppiceError && err.code === 'not_ready')) await releaseOrphans(spec.id);
        throw err;
      }
      const ns = process.hrtime.bigint() - t0;
      opts.onCheckout?.(template, ns);
      const conn = new GuestConnection({ host: co.ip, keyPath, readyTimeoutMs: opts.sshReadyTimeoutMs });
      try {
        if (signal?.aborted) throw backendFailed(`bhyve create ${spec.id}: aborted after checkout`);
        await conn.connect(signal);
      } catch (err) {
        conn.close();
        await releaseQuietly(co.vm, 'ssh connect failed');
        const why = err instanceof Error ? err.message : String(err);
        throw backendFailed(`bhyve create ${spec.id}: guest ${co.vm} (${co.ip}) of ${template} did not answer SSH: ${why}`, err);
      }
      conns.set(spec.id, conn);
      log.info({ id: spec.id, vm: co.vm, ip: co.ip, template, checkoutMs: Number(ns) / 1e6 }, 'bhyve: guest checked out');
      return { id: spec.id, backend: 'bhyve', template, ip: co.ip, data: { vm: co.vm } };
    },

    async adopt(handle: SandboxHandle): Promise<void> {
      vmOf(handle);
      // Dialled on first exec (a paused guest cannot answer a handshake now).
      conns.set(handle.id, new GuestConnection({ host: handle.ip, keyPath, readyTimeoutMs: opts.sshReadyTimeoutMs }));
    },

    async destroy(handle: SandboxHandle): Promise<void> {
      conns.get(handle.id)?.close();
      conns.delete(handle.id);
      const vm = handle.data.vm;
      if (typeof vm !== 'string' || vm === '') return; // never got a guest: nothing to give back
      await pool.release(vm); // idempotent: an unknown vm is success
    },

    exec(handle: SandboxHandle, spec: ExecSpec): ExecProcess {
      if (spec.pty) throw new CoppiceError('unsupported', 'pty: not supported on bhyve backend v1 (no terminal over its ssh exec)', { field: 'pty' });
      return connFor(handle).exec(spec);
    },

    async pause(handle: SandboxHandle): Promise<void> {
      await pool.pause(vmOf(handle));
    },

    async resume(handle: SandboxHandle): Promise<void> {
      await pool.resume(vmOf(handle));
    },

    async listLive(): Promise<LiveSandbox[]> {
      const l = await pool.list();
      // Warm guests are pool stock, not sandboxes. A checked-out guest is the sandbox whose id
      // pool-ctl recorded as owner (the vm name when it has none).
      return l.vms
        .filter((v) => v.state === 'in_use' || v.state === 'paused' || v.state === 'dead')
        .map((v) => ({
          id: v.owner ?? v.vm,
          state: v.state === 'in_use' ? 'running' : v.state === 'paused' ? 'paused' : 'unknown',
          data: { vm: v.vm },
        }));
    },

    async close(): Promise<void> {
      for (const c of conns.values()) c.close();
      conns.clear();
    },

    warm: (template, count, onProgress, signal) => pool.warm(template, count, onProgress, signal),
    drain: (template, signal) => pool.drain(template, signal),
    pool: (signal) => pool.list(signal),
  };
}

/** The seed's answer for every operation bhyve v1 does not implement. */
export const bhyveUnsupported = (operation: string) => unsupported(operation, 'bhyve');
