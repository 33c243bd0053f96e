// The real effects, provided to the pure machines: this file is where statecharts meet backends.
import { fromPromise, type AnyActorRef } from 'xstate';
import { gatewayMachine } from '../../machines/gateway.ts';
import { processMachine } from '../../machines/process.ts';
import { gatewayRegistry, gatewayShard } from '../../machines/gateway.ts';
import type { RegistryContext } from '../../machines/registry.ts';
import { sandboxMachine, type ProvisionInput, type SandboxContext } from '../../machines/sandbox.ts';
import type { BackendKind, Limits, Provisioned } from '../../machines/types.ts';
import type { Backend, SandboxHandle, SnapshotRecord } from '../backends/types.ts';
import type { BhyveBackend } from '../backends/bhyve/backend.ts';
import { CoppiceError, notFound, unsupported } from '../errors.ts';
import { scanTemplates, type ScanRoots } from '../registry/scan.ts';
import { providePlacement } from './placement-effects.ts';
import { providePool } from './pool-effects.ts';
import type { Reaper } from './reaper.ts';
import type { SandboxRecord, SandboxStore } from './store.ts';
import { createRunner } from './runner.ts';
import { hasStartCommand, runStartCommand } from './start-command.ts';

export interface Backends {
  jail: Backend;
  bhyve?: BhyveBackend;
}

export interface EffectDeps {
  backends: Backends;
  /** The shared endAt timer (one per gateway). */
  reaper: Reaper;
  /** Durable records of live sandboxes (absent: nothing survives a restart). */
  store?: SandboxStore;
  roots: ScanRoots;
  /** Where registry warnings (name collisions) are logged. */
  logger?: { warn(obj: object, msg: string): void };
  /** Runs after the first template scan, before the gateway serves (e.g. the bhyve startup warm). */
  startup?: (system: { get(id: string): AnyActorRef | undefined }) => Promise<void>;
}

/** The seed's backend_for(template): which backend serves a kind of template. */
export function backendFor(backends: Backends, kind: BackendKind): Backend {
  const b = Object.hasOwn(backends, kind) ? (backends as unknown as Record<string, Backend | undefined>)[kind] : undefined;
  if (!b) throw new CoppiceError('unsupported', `${kind} backend is not enabled on this gateway`);
  return b;
}

/** Every enabled backend with its kind. */
export const enabledBackends = (backends: Backends): [BackendKind, Backend][] =>
  Object.entries(backends).filter((e): e is [string, Backend] => e[1] !== undefined);

export function provideGateway(deps: EffectDeps) {
  const { backends } = deps;
  const backendOf = (h: SandboxHandle) => backendFor(backends, h.backend);

  const process = processMachine.provide({ actors: { run: createRunner(backendOf) } });

  const sandbox = sandboxMachine.provide({
    actions: {
      scheduleExpiry: ({ context, self }) => deps.reaper.schedule(self, context.endAt),
      cancelExpiry: ({ self }) => deps.reaper.cancel(self),
      persist: ({ context }) => deps.store?.save(recordOf(context)),
      forget: ({ context }) => deps.store?.remove(context.id),
    },
    actors: {
      process,
      provision: fromPromise<Provisioned, ProvisionInput>(
        async ({ input, system, signal }) => {
          const registry = system.get('registry') as AnyActorRef;
          const templates = (registry.getSnapshot().context as RegistryContext).templates;
          const template = templates.find((t) => t.name === input.template);
          if (!template) throw notFound(`template "${input.template}"`);
          const backend = backendFor(backends, template.backend);
          const handle = await backend.create(
            {
              id: input.id,
              template,
              limits: input.limits,
              internet: input.internet,
              ...(input.fromSnapshot ? { fromSnapshot: input.fromSnapshot } : {}),
            },
            signal,
          );
          if (hasStartCommand(template.path)) {
            // The sandbox exists: a failed start must not leak it.
            await runStartCommand(backend, handle, signal).catch(async (err) => {
              await backend.destroy(handle).catch(() => {});
              throw err;
            });
          }
          // A checkout changed the pool's counts: refresh its gauges now, not in 10 s.
          system.get(`pool:${template.name}`)?.send({ type: 'REFRESH' });
          return { ip: handle.ip, handle };
        },
      ),
      // Cold sandboxes are handed over as they are; pool slots (frozen) are thawed here.
      claim: fromPromise<void, { handle: unknown; pooled: boolean }>(async ({ input }) => {
        if (!input.pooled) return;
        const h = input.handle as SandboxHandle;
        await backendOf(h).resume(h);
      }),
      pause: fromPromise<void, { handle: unknown }>(({ input }) => {
        const h = input.handle as SandboxHandle;
        return backendOf(h).pause(h);
      }),
      resume: fromPromise<void, { handle: unknown }>(({ input }) => {
        const h = input.handle as SandboxHandle;
        return backendOf(h).resume(h);
      }),
      snapshot: fromPromise<unknown, { handle: unknown; snapshotID: string }>(async ({ input }): Promise<SnapshotRecord> => {
        const h = input.handle as SandboxHandle;
        const b = backendOf(h);
        if (!b.snapshot) throw unsupported('snapshot', h.backend);
        return b.snapshot(h, input.snapshotID);
      }),
      teardown: fromPromise<void, { handle: unknown; id: string }>(async ({ input, system }) => {
        const h = input.handle as SandboxHandle | undefined;
        if (!h) return;
        await backendOf(h).destroy(h);
        system.get(`pool:${h.template}`)?.send({ type: 'REFRESH' });
      }),
    },
  });

  const registry = gatewayRegistry.provide({
    actors: {
      scan: fromPromise(async () => {
        const r = await scanTemplates(deps.roots);
        // Startup and every reload: an operator reads the log, not only the reload's reply.
        for (const warning of r.warnings) deps.logger?.warn({ warning }, 'template registry');
        return r;
      }),
    },
  });

  return gatewayMachine.provide({
    actors: {
      registry,
      shard: gatewayShard.provide({ actors: { sandbox } }),
      startup: fromPromise(async ({ system }) => {
        // Serving starts only once the first scan has finished.
        const reg = system.get('registry') as AnyActorRef;
        await new Promise<void>((resolve) => {
          if (reg.getSnapshot().matches('idle')) return resolve();
          const sub = reg.subscribe((s: { matches(v: string): boolean }) => {
            if (s.matches('idle')) {
              queueMicrotask(() => sub.unsubscribe());
              resolve();
            }
          });
        });
        await deps.startup?.(system);
      }),
      pool: providePool(deps.backends),
      placement: providePlacement(deps.backends),
    },
  });
}


function recordOf(c: SandboxContext): SandboxRecord {
  const handle = c.handle as SandboxHandle;
  return {
    id: c.id,
    template: c.template,
    backend: c.backend,
    ip: c.ip ?? handle.ip,
    limits: c.limits,
    metadata: c.metadata,
    envVars: c.envVars,
    internet: c.internet,
    createdAt: c.createdAt,
    startedAt: c.startedAt ?? c.createdAt,
    endAt: c.endAt,
    timeoutMs: c.timeoutMs,
    handle,
  };
}
