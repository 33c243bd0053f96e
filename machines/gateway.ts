// The root supervisor: the gateway's whole life in four states.
//
//   starting { scanning -> warming } --> serving --(SIGINT)--> draining --(all drained | deadline)--> stopped
//       \    \                                                  /        \
//        \    `--(SIGINT)----------------------------------------'          `--(second SIGINT)--> stopped (forced)
//         `--(startup failed)--> stopped
//
// Children: the registry, one pool per pooled template, N shards that own the sandboxes (see
// shard.ts for why shards), and one placement per create in flight (placement.ts). A CREATE is
// refused here (not serving, unknown template, no snapshots on that backend) or handed to a
// placement, which answers it; this machine keeps the registry's latest template list for that.
// Starting waits for the first template scan, then runs the startup effect (e.g. the seed's
// startup warm of the first bhyve template). Draining is a state, not a callback: it tells every
// shard to drain its sandboxes, then every pool to drain its slots, and waits for both with a
// deadline.
import { assign, emit, enqueueActions, fromPromise, sendParent, setup, type ActorRefFrom } from 'xstate';
import { placementMachine, type PlacementRequest } from './placement.ts';
import { poolMachine } from './pool.ts';
import { registryMachine, type TemplateEntry } from './registry.ts';
import { shardMachine } from './shard.ts';
import type { SandboxInput } from './sandbox.ts';
import type { Failure, Reply } from './types.ts';

export interface GatewayInput {
  shardCount?: number;
  drainDeadlineMs?: number;
  /** Warm pools for jail templates: this many frozen sandboxes per template (null/0 = none). */
  jailPool?: { size: number; templates: string[] | null } | null;
  /** Backend kinds whose substrate keeps its own pool (every such template gets a pool actor). */
  externalPools?: string[];
  /** Backend kinds that take snapshots (and so fork and create from a snapshot). */
  snapshotBackends?: string[];
}

/** A create or fork as the edge asks for it: the gateway resolves the template's backend. */
export type CreateIntent = Omit<PlacementRequest, 'backend'>;

export type StopReason = 'drained' | 'deadline' | 'forced' | 'startup_failed' | 'drain_failed';

/** The registry as the gateway runs it: every scan result is announced to the gateway. */
export const gatewayRegistry = registryMachine.provide({
  actions: { announce: sendParent(({ context }) => ({ type: 'TEMPLATES', templates: context.templates })) },
});

/** Shards as the gateway runs them: a crashed sandbox is reported up to the root. */
export const gatewayShard = shardMachine.provide({
  actions: {
    reportFault: enqueueActions(({ enqueue, event }) => {
      const fault = { actorId: 'actorId' in event ? event.actorId : '', error: 'error' in event ? event.error : undefined };
      enqueue.emit({ type: 'fault', ...fault });
      enqueue.sendParent({ type: 'SANDBOX_FAULT', ...fault });
    }),
  },
});

export interface GatewayContext {
  shards: ActorRefFrom<typeof shardMachine>[];
  registry: ActorRefFrom<typeof registryMachine>;
  pools: Record<string, ActorRefFrom<typeof poolMachine>>;
  /** Pools whose template left the registry: draining, no longer listed, gone when done. */
  retiring: Record<string, ActorRefFrom<typeof poolMachine>>;
  drainedPools: number;
  /** Pools whose final drain failed (pool-ctl drain): the stop is then `drain_failed`. */
  drainFailures: Failure[];
  drainedShards: number;
  drainDeadlineMs: number;
  jailPool: { size: number; templates: string[] | null } | null;
  externalPools: string[];
  snapshotBackends: string[];
  /** The registry's latest announcement: what a create may name. */
  templates: TemplateEntry[];
  stopReason: StopReason | null;
  error: Failure | null;
}

export type GatewayEvent =
  // A create or fork: answered by the placement it spawns (or refused here).
  | { type: 'CREATE'; reqId: string; request: CreateIntent }
  // One sandbox actor, as it is (placements and pools use it).
  | { type: 'SPAWN'; reqId: string; input: SandboxInput }
  // A sandbox found alive after a restart (reconciliation, while starting).
  | { type: 'ADOPT'; input: SandboxInput }
  | { type: 'SIGINT' }
  | { type: 'SHARD_DRAINED'; index: number }
  | { type: 'TEMPLATES'; templates: TemplateEntry[] }
  | { type: 'SANDBOX_FAULT'; actorId: string; error: unknown }
  | { type: `xstate.done.actor.${string}`; actorId: string; output?: unknown }
  | { type: `xstate.error.actor.${string}`; actorId: string; error: unknown };

export type GatewayEmitted = Reply | { type: 'fault'; actorId: string; error: unknown };

export const DEFAULT_SHARDS = 64;

/** FNV-1a: spreads ids evenly over shards, the same id always to the same shard. */
export function shardOf(id: string, shardCount: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shardCount;
}

export const gatewayMachine = setup({
  types: {
    context: {} as GatewayContext,
    input: {} as GatewayInput,
    events: {} as GatewayEvent,
    emitted: {} as GatewayEmitted,
  },
  actors: {
    registry: gatewayRegistry,
    shard: gatewayShard,
    pool: poolMachine,
    placement: placementMachine,
    // Placeholders; src/actors provides them.
    startup: fromPromise<void>(async () => {}),
  },
  delays: {
    drainDeadline: ({ context }) => context.drainDeadlineMs,
  },
  guards: {
    allShardsDrained: ({ context }) => context.drainedShards >= context.shards.length,
    allPoolsDrained: ({ context }) => context.drainedPools >= Object.keys(context.pools).length,
    unknownTemplate: ({ context, event }) =>
      event.type === 'CREATE' && !context.templates.some((t) => t.name === event.request.template),
    snapshotsUnsupported: ({ context, event }) => {
      if (event.type !== 'CREATE' || (!event.request.fromSnapshot && !event.request.forkOf)) return false;
      const t = context.templates.find((x) => x.name === event.request.template)!;
      return !context.snapshotBackends.includes(t.backend);
    },
  },
  actions: {
    routeSpawn: enqueueActions(({ enqueue, context, event }) => {
      if (event.type !== 'SPAWN' && event.type !== 'ADOPT') return;
      const shard = context.shards[shardOf(event.input.id, context.shards.length)]!;
      enqueue.sendTo(shard, { type: 'SPAWN', input: event.type === 'SPAWN' ? { ...event.input, reqId: event.reqId } : event.input });
    }),
    // The one place a create learns which backend serves its template, and whether a pool can.
    spawnPlacement: enqueueActions(({ enqueue, context, event }) => {
      if (event.type !== 'CREATE') return;
      const t = context.templates.find((x) => x.name === event.request.template)!;
      const pool = Object.hasOwn(context.pools, t.name) && !context.externalPools.includes(t.backend);
      enqueue.spawnChild('placement', {
        id: `placement:${event.reqId}`,
        systemId: `placement:${event.reqId}`,
        input: { reqId: event.reqId, request: { ...event.request, backend: t.backend }, slotPool: pool },
      });
    }),
    refuseUnknownTemplate: emit(({ event }) => ({
      type: 'reply',
      reqId: event.type === 'CREATE' ? event.reqId : '',
      ok: false,
      error: { code: 'not_found', message: `template "${event.type === 'CREATE' ? event.request.template : ''}" not found` },
    }) as const),
    // The wording of src/errors.ts unsupported(): the seed's "... not supported on bhyve backend v1".
    refuseSnapshots: emit(({ context, event }) => {
      const r = event.type === 'CREATE' ? event : null;
      const backend = context.templates.find((x) => x.name === r?.request.template)?.backend ?? '';
      const op = r?.request.forkOf ? 'fork' : 'create from snapshot';
      return { type: 'reply', reqId: r?.reqId ?? '', ok: false, error: { code: 'unsupported', message: `${op} not supported on ${backend} backend v1` } } as const;
    }),
    recordTemplates: assign({ templates: ({ context, event }) => (event.type === 'TEMPLATES' ? event.templates : context.templates) }),
    refuseSpawn: emit(({ event, self }) => {
      const draining = !self.getSnapshot().matches('starting');
      return {
        type: 'reply',
        reqId: event.type === 'SPAWN' || event.type === 'CREATE' ? event.reqId : '',
        ok: false,
        error: draining
          ? { code: 'draining', message: 'gateway is draining: no new sandboxes' }
          : { code: 'not_ready', message: 'gateway is starting: not ready yet' },
      } as const;
    }),
    drainShards: enqueueActions(({ enqueue, context }) => {
      for (const shard of context.shards) enqueue.sendTo(shard, { type: 'DRAIN' });
    }),
    countDrained: assign({ drainedShards: ({ context }) => context.drainedShards + 1 }),
    // One pool per pooled template (bhyve: pool-ctl guests; jail: frozen sandboxes), spawned as templates appear.
    ensurePools: assign({
      pools: ({ context, event, spawn, self }) => {
        if (event.type !== 'TEMPLATES') return context.pools;
        const pools = { ...context.pools };
        const jail = context.jailPool;
        for (const t of event.templates) {
          // A retiring pool still holds `pool:<name>`: its successor comes at a later reload.
          if (Object.hasOwn(pools, t.name) || Object.hasOwn(context.retiring, t.name)) continue;
          // An external pool (bhyve's pool-ctl): every template gets one (empty until warmed).
          // Slot pools (frozen sandboxes): only for the templates asked for.
          const external = context.externalPools.includes(t.backend);
          const slots = !external && jail && (jail.templates === null || jail.templates.includes(t.name)) ? jail.size : 0;
          if (!external && slots === 0) continue;
          pools[t.name] = spawn('pool', {
            id: `pool:${t.name}`,
            systemId: `pool:${t.name}`,
            // Pools spawned while serving (a reload) are armed at once; earlier ones at serving entry.
            input: { template: t.name, backend: t.backend, size: slots, armed: self.getSnapshot().matches('serving') },
          });
        }
        return pools;
      },
    }),
    // A template gone from the registry takes its pool with it: drained (its slots destroyed,
    // pool-ctl's guests released), and out of GET /pool and the gauges at once.
    retirePools: enqueueActions(({ enqueue, context, event }) => {
      if (event.type !== 'TEMPLATES') return;
      const names = new Set(event.templates.map((t) => t.name));
      const gone = Object.keys(context.pools).filter((name) => !names.has(name));
      if (gone.length === 0) return;
      for (const name of gone) enqueue.sendTo(context.pools[name]!, { type: 'DRAIN' });
      enqueue.assign({
        pools: Object.fromEntries(Object.entries(context.pools).filter(([name]) => names.has(name))),
        retiring: { ...context.retiring, ...Object.fromEntries(gone.map((name) => [name, context.pools[name]!])) },
      });
    }),
    forgetRetired: assign({
      retiring: ({ context, event }) => {
        const id = 'actorId' in event ? event.actorId : '';
        return Object.fromEntries(Object.entries(context.retiring).filter(([name]) => `pool:${name}` !== id));
      },
    }),
    armPools: enqueueActions(({ enqueue, context }) => {
      for (const pool of Object.values(context.pools)) enqueue.sendTo(pool, { type: 'ARM' });
    }),
    drainPools: enqueueActions(({ enqueue, context }) => {
      for (const pool of Object.values(context.pools)) enqueue.sendTo(pool, { type: 'DRAIN' });
    }),
    // Only the gateway's own pools count (a retiring pool finishing meanwhile is not one of them).
    countPoolDrained: assign(({ context, event }) => {
      const ours = 'actorId' in event && Object.keys(context.pools).some((name) => `pool:${name}` === event.actorId);
      if (!ours) return {};
      const failure = (event as { output?: { drainError?: Failure | null } }).output?.drainError;
      return { drainedPools: context.drainedPools + 1, drainFailures: failure ? [...context.drainFailures, failure] : context.drainFailures };
    }),
    reportFault: emit(({ event }) => ({
      type: 'fault',
      actorId: 'actorId' in event ? event.actorId : '',
      error: 'error' in event ? event.error : undefined,
    }) as const),
  },
}).createMachine({
  id: 'gateway',
  context: ({ input, spawn }) => ({
    shards: Array.from({ length: input.shardCount ?? DEFAULT_SHARDS }, (_, index) =>
      spawn('shard', { id: `shard-${index}`, systemId: `shard:${index}`, input: { index } }),
    ),
    registry: spawn('registry', { id: 'registry', systemId: 'registry' }),
    pools: {},
    retiring: {},
    drainedPools: 0,
    drainFailures: [],
    drainedShards: 0,
    drainDeadlineMs: input.drainDeadlineMs ?? 30_000,
    jailPool: input.jailPool && input.jailPool.size > 0 ? input.jailPool : null,
    externalPools: input.externalPools ?? [],
    snapshotBackends: input.snapshotBackends ?? [],
    templates: [],
    stopReason: null,
    error: null,
  }),
  initial: 'starting',
  on: {
    SPAWN: { actions: 'refuseSpawn' },
    CREATE: { actions: 'refuseSpawn' },
    TEMPLATES: { actions: ['recordTemplates', 'retirePools', 'ensurePools'] },
    'xstate.done.actor.*': { actions: 'forgetRetired' },
    // One broken child never takes the gateway down: report and carry on.
    'xstate.error.actor.*': { actions: 'reportFault' },
    SANDBOX_FAULT: { actions: 'reportFault' },
  },
  states: {
    starting: {
      initial: 'scanning',
      // SIGINT while starting drains what the start made: pools warmed so far (the startup warm's
      // guests), sandboxes re-adopted by reconciliation. A second SIGINT forces, as when serving.
      on: { SIGINT: 'draining' },
      states: {
        // The first template scan; its announcement spawns the pools.
        scanning: {
          on: { TEMPLATES: { target: 'warming', actions: ['recordTemplates', 'ensurePools'] } },
        },
        // Reconciliation (re-adopting what survived a restart), then e.g. the startup warm.
        warming: {
          on: { ADOPT: { actions: 'routeSpawn' } },
          invoke: {
            src: 'startup',
            onDone: '#gateway.serving',
            onError: {
              target: '#gateway.stopped',
              actions: assign({
                stopReason: 'startup_failed',
                error: ({ event }) => ({ code: 'internal', message: String((event.error as Error)?.message ?? event.error) }),
              }),
            },
          },
        },
      },
    },
    serving: {
      // Pools fill in the background only once the gateway serves (their slots are sandboxes).
      entry: 'armPools',
      on: {
        CREATE: [
          { guard: 'unknownTemplate', actions: 'refuseUnknownTemplate' },
          { guard: 'snapshotsUnsupported', actions: 'refuseSnapshots' },
          { actions: 'spawnPlacement' },
        ],
        SPAWN: { actions: 'routeSpawn' },
        SIGINT: 'draining',
      },
    },
    draining: {
      type: 'parallel',
      on: { SIGINT: { target: 'stopped', actions: assign({ stopReason: 'forced' }) } },
      after: { drainDeadline: { target: 'stopped', actions: assign({ stopReason: 'deadline' }) } },
      onDone: { target: 'stopped', actions: assign({ stopReason: ({ context }) => (context.drainFailures.length > 0 ? 'drain_failed' : 'drained') }) },
      states: {
        sandboxes: {
          initial: 'waiting',
          states: {
            waiting: {
              entry: 'drainShards',
              on: { SHARD_DRAINED: { actions: 'countDrained' } },
              always: { guard: 'allShardsDrained', target: 'done' },
            },
            done: { type: 'final' },
          },
        },
        pools: {
          // After the sandboxes: a pool-ctl drain only removes the shared parts (bridge, image
          // mount) once no guest is left in use, so it must come after the releases.
          initial: 'waiting',
          states: {
            waiting: {
              always: { guard: 'allShardsDrained', target: 'draining' },
            },
            draining: {
              entry: 'drainPools',
              on: { 'xstate.done.actor.*': { actions: ['countPoolDrained', 'forgetRetired'] } },
              always: { guard: 'allPoolsDrained', target: 'done' },
            },
            done: { type: 'final' },
          },
        },
      },
    },
    stopped: { type: 'final' },
  },
  output: ({ context }) => ({
    stopReason: context.stopReason,
    error: context.error,
    ...(context.drainFailures.length > 0 ? { drainFailures: context.drainFailures } : {}),
  }),
});
