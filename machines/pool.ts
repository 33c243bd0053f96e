// A warm pool for one template: slots ready ahead of demand, refilled in the background.
//
//   active {
//     supply: idle <-> warming | emptying      (WARM sets the pool's size; below it, idle refills)
//     gauges: waiting <-> refreshing           (every refreshMs, and on REFRESH)
//   } --DRAIN (gateway shutdown)--> draining --> drained (final)
//
// EMPTY is the operator's drain (POST /pool/:name/drain): idle slots go, the size drops to 0, and
// the pool stays usable. TAKE hands one ready slot to a create (jail pools: a frozen sandbox's id).
//
// Slots live elsewhere; the effects (provided from src/) make and count them:
// bhyve: pool-ctl guests (`pool-ctl warm`, `list --json`, `drain`);
// jail: sandbox actors parked in warm.standby, frozen, whose ids the pool keeps in `slots`.
import { assign, emit, fromPromise, raise, setup } from 'xstate';
import { asFailure, type BackendKind, type Failure, type Reply } from './types.ts';

export interface PoolStats {
  available: number;
  inUse: number;
  /**
   * Slot pools: what changed, never the whole list. The effect saw the slot list as it was when
   * it started; meanwhile a TAKE may have handed one out, so a full list would put it back.
   */
  made?: string[];
  /** Slot pools: slots that are no longer parked (destroyed, failed). */
  gone?: string[];
  /** How the substrate runs its guests, when it says (the microVM pool-ctl: kvm or tcg). */
  accel?: string;
}

export interface PoolInput {
  template: string;
  backend: BackendKind;
  refreshMs?: number;
  /** Slots to keep ready from the start (refilled in the background). */
  size?: number;
  /** Background refills wait for ARM (the gateway arms its pools once it serves). Default true. */
  armed?: boolean;
}

export interface PoolContext {
  template: string;
  backend: BackendKind;
  refreshMs: number;
  available: number;
  inUse: number;
  slots: string[];
  /** The size the pool keeps itself at (set by WARM, 0 after EMPTY). */
  size: number;
  /** Slots asked for by the warm in progress. */
  target: number | null;
  /** Last progress line of the warm in progress. */
  progress: string | null;
  pending: string | null;
  error: Failure | null;
  /** After a failed warm, background refills wait until then (no hot retry loop). */
  refillAfter: number;
  armed: boolean;
  refreshedAt: number | null;
  /** The substrate's acceleration, as last reported (null: not reported). */
  accel: string | null;
  /** The final drain failed (its error is in `error`). */
  drainFailed: boolean;
}

export type PoolEvent =
  | { type: 'WARM'; reqId: string; count: number }
  | { type: 'TAKE'; reqId: string }
  | { type: 'PROGRESS'; line: string }
  | { type: 'REFRESH' }
  | { type: 'CHECK_SIZE' }
  | { type: 'ARM' }
  | { type: 'EMPTY'; reqId: string }
  | { type: 'DRAIN'; reqId?: string };

export type PoolEmitted = Reply | { type: 'progress'; template: string; line: string };

/** What every pool effect is given: which template, served by which backend, and the slots it holds. */
export interface PoolEffectInput {
  template: string;
  backend: BackendKind;
  slots: string[];
}

const REFILL_BACKOFF_MS = 30_000;


export const poolMachine = setup({
  types: {
    context: {} as PoolContext,
    input: {} as PoolInput,
    events: {} as PoolEvent,
    emitted: {} as PoolEmitted,
  },
  actors: {
    // Placeholders; src/ provides them per backend.
    warm: fromPromise<PoolStats, PoolEffectInput & { count: number }>(async () => ({ available: 0, inUse: 0 })),
    stats: fromPromise<PoolStats, PoolEffectInput>(async () => ({ available: 0, inUse: 0 })),
    drain: fromPromise<void, PoolEffectInput>(async () => {}),
  },
  delays: {
    refresh: ({ context }) => context.refreshMs,
  },
  guards: {
    belowSize: ({ context }) => context.armed && context.available < context.size && Date.now() >= context.refillAfter,
    hasSlot: ({ context }) => context.slots.length > 0,
  },
  actions: {
    applyStats: assign(({ context, event }) => {
      const out = (event as unknown as { output: PoolStats }).output;
      if (out.made === undefined && out.gone === undefined) {
        // A pool the substrate keeps: its counts are the truth.
        return { available: out.available, inUse: out.inUse, refreshedAt: Date.now(), accel: out.accel ?? context.accel };
      }
      const gone = new Set(out.gone ?? []);
      const kept = context.slots.filter((s) => !gone.has(s));
      const slots = [...kept, ...(out.made ?? []).filter((s) => !kept.includes(s))];
      return { available: slots.length, inUse: out.inUse, slots, refreshedAt: Date.now() };
    }),
    replyOk: emit(({ context }) => ({
      type: 'reply',
      reqId: context.pending ?? '',
      ok: true,
      value: { template: context.template, available: context.available, inUse: context.inUse, size: context.size },
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
    // Hand out the oldest ready slot, or null when there is none (the create goes cold).
    take: emit(({ context, event }) => ({
      type: 'reply',
      reqId: event.type === 'TAKE' ? event.reqId : '',
      ok: true,
      value: { slot: context.slots[0] ?? null },
    }) as const),
    dropTaken: assign(({ context }) => ({
      slots: context.slots.slice(1),
      available: Math.max(0, context.available - 1),
      inUse: context.inUse + 1,
    })),
    checkSize: raise({ type: 'CHECK_SIZE' }),
  },
}).createMachine({
  id: 'pool',
  context: ({ input }) => ({
    template: input.template,
    backend: input.backend,
    refreshMs: input.refreshMs ?? 10_000,
    available: 0,
    inUse: 0,
    slots: [],
    size: input.size ?? 0,
    target: null,
    progress: null,
    pending: null,
    error: null,
    refillAfter: 0,
    armed: input.armed ?? true,
    refreshedAt: null,
    accel: null,
    drainFailed: false,
  }),
  initial: 'active',
  states: {
    active: {
      type: 'parallel',
      on: {
        DRAIN: { target: 'draining', actions: assign({ pending: ({ event }) => event.reqId ?? null }) },
        TAKE: [
          { guard: 'hasSlot', actions: ['take', 'dropTaken', 'checkSize'] },
          { actions: 'take' },
        ],
        ARM: { actions: [assign({ armed: true }), 'checkSize'] },
      },
      states: {
        supply: {
          initial: 'idle',
          states: {
            idle: {
              on: {
                WARM: {
                  target: 'warming',
                  actions: assign({
                    pending: ({ event }) => event.reqId,
                    target: ({ event }) => event.count,
                    size: ({ event }) => event.count,
                    progress: null,
                    refillAfter: 0,
                  }),
                },
                EMPTY: { target: 'emptying', actions: assign({ pending: ({ event }) => event.reqId, size: 0 }) },
                // Background refill: nobody waits for it (pending stays null).
                CHECK_SIZE: {
                  guard: 'belowSize',
                  target: 'warming',
                  actions: assign({ target: ({ context }) => context.size, progress: null }),
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
                input: ({ context }) => ({ template: context.template, backend: context.backend, count: context.target ?? 0, slots: context.slots }),
                onDone: {
                  target: 'idle',
                  actions: ['applyStats', assign({ error: null }), 'replyOk', assign({ pending: null, target: null }), 'checkSize'],
                },
                onError: {
                  target: 'idle',
                  actions: [
                    assign({ error: ({ event }) => asFailure(event.error), refillAfter: () => Date.now() + REFILL_BACKOFF_MS }),
                    'replyError',
                    assign({ pending: null, target: null }),
                    raise({ type: 'REFRESH' }),
                  ],
                },
              },
            },
            emptying: {
              on: { WARM: { actions: 'rejectBusy' }, EMPTY: { actions: 'rejectBusy' } },
              invoke: {
                src: 'drain',
                input: ({ context }) => ({ template: context.template, backend: context.backend, slots: context.slots }),
                onDone: {
                  target: 'idle',
                  actions: [assign({ available: 0, slots: [], error: null }), 'replyOk', assign({ pending: null }), raise({ type: 'REFRESH' })],
                },
                onError: {
                  target: 'idle',
                  actions: [assign({ error: ({ event }) => asFailure(event.error) }), 'replyError', assign({ pending: null })],
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
                input: ({ context }) => ({ template: context.template, backend: context.backend, slots: context.slots }),
                onDone: { target: 'waiting', actions: ['applyStats', 'checkSize'] },
                // A failed refresh keeps the last counts (gauges stay consistent, never garbage).
                onError: 'waiting',
              },
            },
          },
        },
      },
    },
    draining: {
      // What the pool's end reports is this drain's outcome, not an earlier warm's.
      entry: assign({ error: null, drainFailed: false }),
      on: {
        WARM: { actions: 'rejectDraining' },
        EMPTY: { actions: 'rejectDraining' },
        TAKE: { actions: emit(({ event }) => ({ type: 'reply', reqId: event.reqId, ok: true, value: { slot: null } }) as const) },
        DRAIN: {},
      },
      invoke: {
        src: 'drain',
        input: ({ context }) => ({ template: context.template, backend: context.backend, slots: context.slots }),
        // Best effort: a failed drain is logged by the effect and the pool still ends.
        onDone: { target: 'drained', actions: ['replyOk'] },
        onError: { target: 'drained', actions: [assign({ error: ({ event }) => asFailure(event.error), drainFailed: true }), 'replyError'] },
      },
    },
    drained: {
      type: 'final',
      entry: assign({ available: 0, slots: [], pending: null }),
    },
  },
  // The gateway's drain reads it: a failed drain (pool-ctl's output in the message) fails the stop.
  output: ({ context }) => ({ template: context.template, drainError: context.drainFailed ? context.error : null }),
});
