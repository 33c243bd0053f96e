// The pool machine's effects, by the backend's capability:
// an external pool (bhyve's pool-ctl): the substrate keeps the slots (warm / list --json / drain);
// slot pools (every other backend): the slots are sandbox actors spawned with `pooled: true`,
// parked frozen in warm.standby.
import { fromPromise } from 'xstate';
import { poolMachine, type PoolEffectInput, type PoolStats } from '../../machines/pool.ts';
import type { SandboxContext } from '../../machines/sandbox.ts';
import { DEFAULT_LIMITS } from '../backends/types.ts';
import { backendFor, type Backends } from './effects.ts';
import type { Backend } from '../backends/types.ts';
import { hasExternalPool, type ExternalPoolCapable } from '../backends/capabilities.ts';
import { whenDone } from './request.ts';
import { spawnSandbox, type ActorSystem } from './spawn.ts';

type System = ActorSystem;
type Snap = { status: string; context: SandboxContext; matches(v: unknown): boolean };

/** How many pool slots are created at once (each is a full runc create). */
const WARM_CONCURRENCY = 4;


function standby(system: System, slots: string[]): string[] {
  return slots.filter((id) => {
    const s = system.get(`sandbox:${id}`)?.getSnapshot() as Snap | undefined;
    return s?.status === 'active' && s.matches({ warm: 'standby' });
  });
}

/** Spawn one pooled sandbox and wait until it is parked. */
const spawnSlot = (system: System, template: string, backend: string): Promise<string> =>
  spawnSandbox(system, { template, backend, timeoutMs: 0, limits: DEFAULT_LIMITS, pooled: true }, 120_000, 'pool slot');

async function warmSlots(system: System, template: string, backend: string, count: number, slots: string[]): Promise<PoolStats> {
  const ready = standby(system, slots);
  const made: string[] = [];
  let firstError: unknown = null;
  let need = count - ready.length;
  const worker = async () => {
    while (need > 0) {
      need -= 1;
      try {
        made.push(await spawnSlot(system, template, backend));
      } catch (err) {
        firstError ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(WARM_CONCURRENCY, Math.max(0, need)) }, worker));
  if (firstError && made.length === 0 && ready.length < count) throw firstError;
  return { available: ready.length + made.length, inUse: 0, made, gone: slots.filter((id) => !ready.includes(id)) };
}

async function drainSlots(system: System, slots: string[]): Promise<void> {
  await Promise.all(
    standby(system, slots).map(async (id) => {
      const ref = system.get(`sandbox:${id}`);
      if (!ref) return;
      ref.send({ type: 'DESTROY' });
      await whenDone(ref, 60_000).catch(() => {});
    }),
  );
}

export function providePool(backends: Backends) {
  /** The backend's own pool, or null when the gateway keeps the slots itself. */
  const externalOf = (backend: string): (Backend & ExternalPoolCapable) | null => {
    const b = backendFor(backends, backend);
    return hasExternalPool(b) ? b : null;
  };
  const externalStats = async (ext: ExternalPoolCapable, template: string, signal?: AbortSignal): Promise<PoolStats> => {
    const list = await ext.pool(signal);
    const t = list.templates[template];
    return { available: t?.available ?? 0, inUse: t?.in_use ?? 0, ...(list.accel ? { accel: list.accel } : {}) };
  };

  return poolMachine.provide({
    actors: {
      warm: fromPromise<PoolStats, PoolEffectInput & { count: number }>(async ({ input, system, signal }) => {
        const ext = externalOf(input.backend);
        if (!ext) return warmSlots(system, input.template, input.backend, input.count, input.slots);
        const pool = system.get(`pool:${input.template}`);
        await ext.warm(input.template, input.count, (line) => pool?.send({ type: 'PROGRESS', line }), signal);
        return externalStats(ext, input.template, signal);
      }),
      stats: fromPromise<PoolStats, PoolEffectInput>(async ({ input, system, signal }) => {
        const ext = externalOf(input.backend);
        if (!ext) {
          const ready = standby(system, input.slots);
          return { available: ready.length, inUse: 0, gone: input.slots.filter((id) => !ready.includes(id)) };
        }
        return externalStats(ext, input.template, signal);
      }),
      drain: fromPromise<void, PoolEffectInput>(async ({ input, system, signal }) => {
        const ext = externalOf(input.backend);
        if (!ext) return drainSlots(system, input.slots);
        await ext.drain(input.template, signal);
      }),
    },
  });
}
