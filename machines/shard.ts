// An intermediate supervisor. XState copies a parent's children map on every spawn, so one flat
// parent of 10,000 sandboxes is quadratic; the gateway spreads sandboxes over N shards instead.
// A shard owns its sandboxes: it spawns them, removes them when they end, and drains them.
import { assign, emit, enqueueActions, sendParent, setup } from 'xstate';
import { sandboxMachine, type SandboxInput } from './sandbox.ts';

export interface ShardContext {
  index: number;
  live: number;
  draining: boolean;
}

export type ShardEvent =
  | { type: 'SPAWN'; input: SandboxInput }
  | { type: 'DRAIN' }
  // A child sandbox ended (final state) or crashed.
  | { type: `xstate.done.actor.${string}`; actorId: string; output?: unknown }
  | { type: `xstate.error.actor.${string}`; actorId: string; error: unknown };

/** Emitted when a child sandbox crashed (a bug or an unexpected throw, not an expected failure). */
export type ShardEmitted = { type: 'fault'; actorId: string; error: unknown };

export const shardMachine = setup({
  types: {
    context: {} as ShardContext,
    input: {} as { index: number },
    events: {} as ShardEvent,
    emitted: {} as ShardEmitted,
  },
  actors: { sandbox: sandboxMachine },
  guards: {
    empty: ({ context }) => context.live === 0,
  },
  actions: {
    spawnSandbox: enqueueActions(({ enqueue, event, context }) => {
      if (event.type !== 'SPAWN') return;
      enqueue.spawnChild('sandbox', { id: event.input.id, systemId: `sandbox:${event.input.id}`, input: event.input });
      enqueue.assign({ live: context.live + 1 });
    }),
    // stopChild sends no event back, so the count is ours to keep.
    removeChild: enqueueActions(({ enqueue, event, context }) => {
      if (!('actorId' in event)) return;
      const id = event.actorId;
      enqueue.stopChild(id);
      enqueue.assign({ live: Math.max(0, context.live - 1) });
    }),
    // Emitted here; the gateway provides a version that also tells it (see gatewayShard).
    reportFault: emit(({ event }) => ({
      type: 'fault',
      actorId: 'actorId' in event ? event.actorId : '',
      error: 'error' in event ? event.error : undefined,
    }) as const),
    drainChildren: enqueueActions(({ enqueue, self }) => {
      for (const child of Object.values(self.getSnapshot().children)) {
        if (child) enqueue.sendTo(child, { type: 'DRAIN' });
      }
    }),
    reportDrained: sendParent(({ context }) => ({ type: 'SHARD_DRAINED', index: context.index })),
  },
}).createMachine({
  id: 'shard',
  context: ({ input }) => ({ index: input.index, live: 0, draining: false }),
  initial: 'serving',
  on: {
    'xstate.done.actor.*': { actions: 'removeChild' },
    'xstate.error.actor.*': { actions: ['reportFault', 'removeChild'] },
  },
  states: {
    serving: {
      on: {
        SPAWN: { actions: 'spawnSandbox' },
        DRAIN: { target: 'draining' },
      },
    },
    draining: {
      entry: [assign({ draining: true }), 'drainChildren'],
      always: { guard: 'empty', target: 'drained' },
    },
    drained: {
      entry: 'reportDrained',
    },
  },
});
