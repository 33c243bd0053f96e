// A warm pool for one template: how many slots are ready and in use, warming on request, and
// drained at shutdown.
//
//   active { supply: idle <-> warming | emptying ; gauges: waiting <-> refreshing (every refreshMs) }
//     --DRAIN (gateway shutdown)--> draining --> drained (final)
//
// EMPTY is the operator's drain (POST /pool/:name/drain): the pool empties and stays usable.
//
// For bhyve templates the slots are pool-ctl guests (the effects shell out to pool-ctl); the
// counts come from `pool-ctl list --json`.
import { assign, emit, fromPromise, raise, setup } from 'xstate';
import type { BackendKind, Failure, Reply } from './types.ts';

export interface PoolStats {
  available: number;
  inUse: number;
}

export interface PoolInput {
  template: string;
  backend: BackendKind;
  refreshMs?: number;
}

export interface PoolContext extends PoolStats {
  template: string;
  backend: BackendKind;
  refreshMs: number;
  /** Slots asked for by the warm in progress. */
  target: number | null;
  /** Last progress line of the warm in progress. */
  progress: string | null;
  pending: string | null;
  error: Failure | null;
  refreshedAt: number | null;
}

export type PoolEvent =
  | { type: 'WARM'; reqId: string; count: number }
  | { type: 'PROGRESS'; line: string }
  | { type: 'REFRESH' }
  | { type: 'EMPTY'; reqId: string }
  | { type: 'DRAIN'; reqId?: string };

export type PoolEmitted = Reply | { type: 'progress'; template: string; line: string };

const asFailure = (error: unknown): Failure => {
  const e = error as Partial<Failure> | undefined;
  return { code: typeof e?.code === 'string' ? e.code : 'backend_failed', message: e?.message ?? String(error) };
};

export const poolMachine = setup({
  types: {
    context: {} as PoolContext,
    input: {} as PoolInput,
    events: {} as PoolEvent,
    emitted: {} as PoolEmitted,
  },
  actors: {
    // Placeholders; src/ provides them per backend.
    warm: fromPromise<PoolStats, { template: string; count: number }>(async () => ({ available: 0, inUse: 0 })),
    stats: fromPromise<PoolStats, { template: string }>(async () => ({ available: 0, inUse: 0 })),
    drain: fromPromise<void, { template: string }>(async () => {}),
  },
  delays: {
    refresh: ({ context }) => context.refreshMs,
  },
  actions: {
    replyOk: emit(({ context }) => ({
      type: 'reply',
      reqId: context.pending ?? '',
      ok: true,
      value: { template: context.template, available: context.available, inUse: context.inUse },
    }) as const),
    replyError: emit(({ context }) => ({
      type: 'reply',
      reqId: context.pending ?? '',
      ok: false,
      error: context.error ?? { code: 'internal', message: 'unknown failure' },
    }) as const),
    rejectBusy: emit(({ event }) => ({
      type: 'reply',
      reqId: 'reqId' in event ? (event.reqId ?? '') : '',
      ok: false,
      error: { code: 'conflict', message: 'a warm or drain of this pool is already in progress' },
    }) as const),
    rejectDraining: emit(({ event, context }) => ({
      type: 'reply',
      reqId: 'reqId' in event ? (event.reqId ?? '') : '',
      ok: false,
      error: { code: 'draining', message: `pool ${context.template} is draining` },
    }) as const),
  },
}).createMachine({
  id: 'pool',
  context: ({ input }) => ({
    template: input.template,
    backend: input.backend,
    refreshMs: input.refreshMs ?? 10_000,
    available: 0,
    inUse: 0,
    target: null,
    progress: null,
    pending: null,
    error: null,
    refreshedAt: null,
  }),
  initial: 'active',
  states: {
    active: {
      type: 'parallel',
      on: { DRAIN: { target: 'draining', actions: assign({ pending: ({ event }) => event.reqId ?? null }) } },
      states: {
        supply: {
          initial: 'idle',
          states: {
            idle: {
              on: {
                WARM: {
                  target: 'warming',
                  actions: assign({ pending: ({ event }) => event.reqId, target: ({ event }) => event.count, progress: null }),
                },
                EMPTY: { target: 'emptying', actions: assign({ pending: ({ event }) => event.reqId }) },
              },
            },
            emptying: {
              on: { WARM: { actions: 'rejectBusy' }, EMPTY: { actions: 'rejectBusy' } },
              invoke: {
                src: 'drain',
                input: ({ context }) => ({ template: context.template }),
                onDone: {
                  target: 'idle',
                  actions: [assign({ available: 0, error: null }), 'replyOk', assign({ pending: null }), raise({ type: 'REFRESH' })],
                },
                onError: {
                  target: 'idle',
                  actions: [assign({ error: ({ event }) => asFailure(event.error) }), 'replyError', assign({ pending: null })],
                },
              },
            },
            warming: {
              on: {
                WARM: { actions: 'rejectBusy' },
                EMPTY: { actions: 'rejectBusy' },
                PROGRESS: {
                  actions: [
                    assign({ progress: ({ event }) => event.line }),
                    emit(({ context, event }) => ({ type: 'progress', template: context.template, line: event.line }) as const),
                  ],
                },
              },
              invoke: {
                src: 'warm',
                input: ({ context }) => ({ template: context.template, count: context.target ?? 0 }),
                onDone: {
                  target: 'idle',
                  actions: [
                    assign({
                      available: ({ event }) => event.output.available,
                      inUse: ({ event }) => event.output.inUse,
                      error: null,
                    }),
                    'replyOk',
                    assign({ pending: null, target: null }),
                  ],
                },
                onError: {
                  target: 'idle',
                  actions: [assign({ error: ({ event }) => asFailure(event.error) }), 'replyError', assign({ pending: null, target: null })],
                },
              },
            },
          },
        },
        gauges: {
          initial: 'refreshing',
          states: {
            waiting: {
              after: { refresh: 'refreshing' },
              on: { REFRESH: 'refreshing' },
            },
            refreshing: {
              invoke: {
                src: 'stats',
                input: ({ context }) => ({ template: context.template }),
                onDone: {
                  target: 'waiting',
                  actions: assign({
                    available: ({ event }) => event.output.available,
                    inUse: ({ event }) => event.output.inUse,
                    refreshedAt: () => Date.now(),
                  }),
                },
                // A failed refresh keeps the last counts (gauges stay consistent, never garbage).
                onError: 'waiting',
              },
            },
          },
        },
      },
    },
    draining: {
      on: { WARM: { actions: 'rejectDraining' }, EMPTY: { actions: 'rejectDraining' }, DRAIN: {} },
      invoke: {
        src: 'drain',
        input: ({ context }) => ({ template: context.template }),
        // Best effort: a failed drain is logged by the effect and the pool still ends.
        onDone: { target: 'drained', actions: ['replyOk'] },
        onError: { target: 'drained', actions: [assign({ error: ({ event }) => asFailure(event.error) }), 'replyError'] },
      },
    },
    drained: {
      type: 'final',
      entry: assign({ available: 0, pending: null }),
    },
  },
});
