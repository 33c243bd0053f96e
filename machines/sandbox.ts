// The lifecycle of one sandbox. Read top to bottom, this is the documentation:
//
//   warm (provisioning [-> parking -> standby -> checkout, for pool slots]) -> live { ready <-> exec, pausing -> paused -> resuming }
//        -> draining -> gone            (any failure on the way in: failed)
//
// `live` runs a second region, `clock`, that asks for an EXPIRE at endAt (scheduleExpiry, provided
// from src/: one shared timer for all sandboxes, because a timer per actor makes every actor stop
// scan them all in xstate's scheduler); an EXPIRE that is due drains the sandbox.
// Effects are named here and provided from src/: provision (backend create), claim (hand a pool
// slot to a caller: thaw it), pause, resume, teardown (backend destroy) and the per-command
// `process` machine.
import { assign, emit, enqueueActions, fromPromise, raise, setup } from 'xstate';
import { processMachine, type ProcessOutput } from './process.ts';
import { asFailure, type BackendKind, type ExecRequest, type Failure, type Limits, type Provisioned, type Reply } from './types.ts';

export interface SandboxInput {
  id: string;
  template: string;
  backend: BackendKind;
  timeoutMs: number;
  limits: Limits;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  /** Pool slots stop in warm.standby until a CHECKOUT. */
  pooled?: boolean;
  /** The request that asked for this sandbox; answered once it is ready or failed. */
  reqId?: string;
  /** Start from a snapshot's files (consume: the snapshot is used up, as for a fork). */
  fromSnapshot?: { snapshotID: string; consume?: boolean };
  /** Egress beyond the host (off by default). */
  internet?: boolean;
  /** Re-adoption after a restart: skip provisioning, the substrate already exists. */
  adopt?: Provisioned & { paused: boolean; endAt: number };
  now?: number;
}

export interface SandboxContext {
  id: string;
  template: string;
  backend: BackendKind;
  pooled: boolean;
  timeoutMs: number;
  limits: Limits;
  metadata: Record<string, string>;
  envVars: Record<string, string>;
  fromSnapshot: { snapshotID: string; consume?: boolean } | null;
  internet: boolean;
  ip: string | null;
  handle: unknown;
  createdAt: number;
  startedAt: number | null;
  endAt: number;
  /** Live command ids (children `proc:<pid>`). */
  procs: string[];
  error: Failure | null;
  /** reqId of the request waiting for the current async step. */
  pending: string | null;
  /** DESTROY/DRAIN arrived during an async step: drain as soon as it settles (never leak a half-made sandbox). */
  doomed: boolean;
  /** Re-adopted while frozen: enter live in paused. */
  startPaused: boolean;
}

export interface ProvisionInput {
  id: string;
  template: string;
  backend: BackendKind;
  limits: Limits;
  fromSnapshot: { snapshotID: string; consume?: boolean } | null;
  internet: boolean;
}

export type SandboxEvent =
  | { type: 'SNAPSHOT'; reqId: string; snapshotID: string }
  | { type: 'CHECKOUT'; reqId: string; timeoutMs: number; metadata?: Record<string, string>; envVars?: Record<string, string> }
  | { type: 'EXEC'; reqId: string; processId: string; request: ExecRequest; channel: unknown }
  | { type: 'PAUSE'; reqId: string }
  | { type: 'RESUME'; reqId: string }
  | { type: 'CONNECT'; reqId: string; timeoutMs: number }
  | { type: 'SET_TIMEOUT'; reqId: string; timeoutMs: number }
  | { type: 'DESTROY' }
  | { type: 'DRAIN' }
  | { type: 'EXPIRE' }
  | { type: 'RESET_CLOCK' };

const fail = (code: string, message: string): Failure => ({ code, message });
/** While an async step runs, other requests that need the sandbox steady get 409; the end ones are remembered. */
const BUSY_FREEZER = {
  PAUSE: { actions: 'rejectBusy' },
  RESUME: { actions: 'rejectBusy' },
  CONNECT: { actions: 'rejectBusy' },
  DESTROY: { actions: 'doom' },
  DRAIN: { actions: 'doom' },
  EXPIRE: { guard: 'expired', actions: 'doom' },
} as const;
/** ...and while a snapshot or exec start runs, a second snapshot is busy too (while pausing or
 * resuming, BUSY_FREEZER above, a snapshot is in the wrong state instead: see `live`). */
const BUSY = { ...BUSY_FREEZER, SNAPSHOT: { actions: 'rejectBusy' } } as const;

export const sandboxMachine = setup({
  types: {
    context: {} as SandboxContext,
    input: {} as SandboxInput,
    events: {} as SandboxEvent,
    emitted: {} as Reply,
  },
  actors: {
    // Placeholders; src/actors provides the real effects.
    provision: fromPromise<Provisioned, ProvisionInput>(async () => {
      throw new Error('provision not provided');
    }),
    claim: fromPromise<void, { handle: unknown; pooled: boolean }>(async () => {}),
    pause: fromPromise<void, { handle: unknown }>(async () => {}),
    resume: fromPromise<void, { handle: unknown }>(async () => {}),
    teardown: fromPromise<void, { handle: unknown; id: string }>(async () => {}),
    snapshot: fromPromise<unknown, { handle: unknown; snapshotID: string }>(async () => {
      throw new Error('snapshot not provided');
    }),
    process: processMachine,
  },
  guards: {
    pooled: ({ context }) => context.pooled,
    doomed: ({ context }) => context.doomed,
    running: ({ context }) => context.procs.length > 0,
    idle: ({ context }) => context.procs.length === 0,
    expired: ({ context }) => context.endAt <= Date.now(),
    adopted: ({ context }) => context.handle !== undefined,
    adoptedPaused: ({ context }) => context.handle !== undefined && context.startPaused,
  },
  actions: {
    replyOk: emit(({ context }) => ({ type: 'reply', reqId: context.pending ?? '', ok: true }) as const),
    replyError: emit(({ context }) => ({
      type: 'reply',
      reqId: context.pending ?? '',
      ok: false,
      error: context.error ?? fail('internal', 'unknown failure'),
    }) as const),
    // Answer an event that is not valid in the current state: 409 with the state named.
    rejectWrongState: emit(({ event, self }) => ({
      type: 'reply',
      reqId: 'reqId' in event ? event.reqId : '',
      ok: false,
      error: fail('conflict', `cannot ${event.type.toLowerCase()} a sandbox that is ${describe(self.getSnapshot().value)}`),
    }) as const),
    rejectBusy: emit(({ event }) => ({
      type: 'reply',
      reqId: 'reqId' in event ? event.reqId : '',
      ok: false,
      error: fail('conflict', `another ${event.type.toLowerCase()} is in progress`),
    }) as const),
    replyValue: emit(({ context, event }) => ({
      type: 'reply',
      reqId: context.pending ?? '',
      ok: true,
      value: (event as { output?: unknown }).output,
    }) as const),
    recordError: assign({ error: ({ event }) => asFailure((event as { error?: unknown }).error) }),
    /** The step a request was waiting for failed: remember why, answer it, forget it. */
    failRequest: enqueueActions(({ enqueue }) => {
      enqueue('recordError');
      enqueue('replyError');
      enqueue('clearPending');
    }),
    takePending: assign({ pending: ({ event }) => ('reqId' in event ? event.reqId : null) }),
    clearPending: assign({ pending: null }),
    doom: assign({ doomed: true }),
    extendTimeout: assign({
      // connect only ever extends (E2B semantics); SET_TIMEOUT may shorten.
      endAt: ({ context, event }) =>
        'timeoutMs' in event ? Math.max(context.endAt, Date.now() + event.timeoutMs) : context.endAt,
    }),
    setTimeout: assign({
      endAt: ({ context, event }) => ('timeoutMs' in event ? Date.now() + event.timeoutMs : context.endAt),
    }),
    resetClock: raise({ type: 'RESET_CLOCK' }),
    // Placeholders: src/ provides the shared expiry timer (src/actors/reaper.ts).
    scheduleExpiry: () => {},
    cancelExpiry: () => {},
    // Placeholders: src/ keeps a durable record of every live sandbox (src/actors/store.ts),
    // so a restarted gateway can re-adopt it.
    persist: () => {},
    forget: () => {},
    startProcess: enqueueActions(({ enqueue, event, context }) => {
      if (event.type !== 'EXEC') return;
      const id = `proc:${event.processId}`;
      enqueue.spawnChild('process', {
        id,
        systemId: `process:${context.id}:${event.processId}`,
        input: { processId: event.processId, request: event.request, handle: context.handle, channel: event.channel },
      });
      enqueue.assign({ procs: [...context.procs, id] });
      enqueue.emit({ type: 'reply', reqId: event.reqId, ok: true, value: { processId: event.processId } });
    }),
    forgetProcess: enqueueActions(({ enqueue, event, context }) => {
      const id = (event as unknown as { actorId?: string }).actorId;
      if (!id || !context.procs.includes(id)) return;
      enqueue.stopChild(id);
      enqueue.assign({ procs: context.procs.filter((p) => p !== id) });
    }),
    stopAllProcesses: enqueueActions(({ enqueue, context }) => {
      for (const id of context.procs) enqueue.stopChild(id);
      enqueue.assign({ procs: [] });
    }),
  },
}).createMachine({
  id: 'sandbox',
  context: ({ input }) => {
    const now = input.now ?? Date.now();
    return {
      id: input.id,
      template: input.template,
      backend: input.backend,
      pooled: input.pooled ?? false,
      timeoutMs: input.timeoutMs,
      limits: input.limits,
      metadata: input.metadata ?? {},
      envVars: input.envVars ?? {},
      fromSnapshot: input.fromSnapshot ?? null,
      internet: input.internet ?? false,
      ip: input.adopt?.ip ?? null,
      handle: input.adopt?.handle,
      createdAt: now,
      startedAt: input.adopt ? now : null,
      endAt: input.adopt?.endAt ?? now + input.timeoutMs,
      procs: [],
      error: null,
      pending: input.reqId ?? null,
      doomed: false,
      startPaused: input.adopt?.paused ?? false,
    };
  },
  initial: 'boot',
  // Fallbacks: only reached when the active state does not handle the event.
  on: {
    EXEC: { actions: 'rejectWrongState' },
    PAUSE: { actions: 'rejectWrongState' },
    RESUME: { actions: 'rejectWrongState' },
    CONNECT: { actions: 'rejectWrongState' },
    SET_TIMEOUT: { actions: 'rejectWrongState' },
    CHECKOUT: { actions: 'rejectWrongState' },
    SNAPSHOT: { actions: 'rejectWrongState' },
    // Only commands end up here: the effects' own done/error events are handled by their states.
    'xstate.done.actor.*': { actions: 'forgetProcess' },
    'xstate.error.actor.*': { actions: 'forgetProcess' },
  },
  states: {
    // Decides between a fresh sandbox and one re-adopted after a gateway restart.
    boot: {
      always: [
        { guard: 'adoptedPaused', target: '#paused' },
        { guard: 'adopted', target: 'live' },
        { target: 'warm' },
      ],
    },
    warm: {
      initial: 'provisioning',
      on: { DESTROY: { actions: 'doom' }, DRAIN: { actions: 'doom' } },
      states: {
        provisioning: {
          invoke: {
            src: 'provision',
            input: ({ context }) => ({
              id: context.id,
              template: context.template,
              backend: context.backend,
              limits: context.limits,
              fromSnapshot: context.fromSnapshot,
              internet: context.internet,
            }),
            onDone: [
              {
                guard: 'doomed',
                target: '#sandbox.draining',
                actions: assign({ ip: ({ event }) => event.output.ip, handle: ({ event }) => event.output.handle }),
              },
              {
                guard: 'pooled',
                target: 'parking',
                actions: assign({ ip: ({ event }) => event.output.ip, handle: ({ event }) => event.output.handle }),
              },
              // A cold sandbox is the caller's from birth: nothing to claim, straight to live.
              {
                target: '#sandbox.live',
                actions: [
                  assign({ ip: ({ event }) => event.output.ip, handle: ({ event }) => event.output.handle, startedAt: () => Date.now() }),
                  'replyOk',
                  'clearPending',
                ],
              },
            ],
            onError: {
              target: '#sandbox.failed',
              actions: 'recordError',
            },
          },
        },
        // A pool slot is frozen until a caller takes it: it costs memory, no CPU.
        parking: {
          invoke: {
            src: 'pause',
            input: ({ context }) => ({ handle: context.handle }),
            onDone: [
              { guard: 'doomed', target: '#sandbox.draining' },
              { target: 'standby', actions: ['replyOk', 'clearPending'] },
            ],
            onError: {
              target: '#sandbox.draining',
              actions: 'failRequest',
            },
          },
        },
        standby: {
          on: {
            DESTROY: { target: '#sandbox.draining' },
            DRAIN: { target: '#sandbox.draining' },
            CHECKOUT: {
              target: '#sandbox.checkout',
              actions: [
                'takePending',
                assign({
                  endAt: ({ event }) => Date.now() + event.timeoutMs,
                  timeoutMs: ({ event }) => event.timeoutMs,
                  metadata: ({ event, context }) => event.metadata ?? context.metadata,
                  envVars: ({ event, context }) => event.envVars ?? context.envVars,
                }),
              ],
            },
          },
        },
      },
    },
    checkout: {
      on: { DESTROY: { actions: 'doom' }, DRAIN: { actions: 'doom' } },
      invoke: {
        src: 'claim',
        input: ({ context }) => ({ handle: context.handle, pooled: context.pooled }),
        onDone: [
          { guard: 'doomed', target: 'draining' },
          {
            target: 'live',
            actions: [assign({ startedAt: () => Date.now() }), 'replyOk', 'clearPending'],
          },
        ],
        onError: {
          target: 'draining',
          actions: 'failRequest',
        },
      },
    },
    live: {
      type: 'parallel',
      entry: 'persist',
      exit: 'cancelExpiry',
      on: {
        DESTROY: { target: 'draining' },
        DRAIN: { target: 'draining' },
        // Stale EXPIREs (endAt moved after it was scheduled) are ignored.
        EXPIRE: { guard: 'expired', target: 'draining' },
        SET_TIMEOUT: {
          actions: ['setTimeout', 'persist', 'resetClock', emit(({ event }) => ({ type: 'reply', reqId: event.reqId, ok: true }) as const)],
        },
      },
      states: {
        activity: {
          initial: 'ready',
          states: {
            ready: {
              on: {
                SNAPSHOT: { target: 'snapshotting', actions: 'takePending' },
                EXEC: { target: 'exec', actions: 'startProcess' },
                PAUSE: { target: 'pausing', actions: 'takePending' },
                CONNECT: {
                  actions: ['extendTimeout', 'persist', 'resetClock', emit(({ event }) => ({ type: 'reply', reqId: event.reqId, ok: true, value: { resumed: false } }) as const)],
                },
              },
            },
            exec: {
              always: { guard: 'idle', target: 'ready' },
              on: {
                SNAPSHOT: { target: 'snapshotting', actions: 'takePending' },
                EXEC: { actions: 'startProcess' },
                PAUSE: { target: 'pausing', actions: 'takePending' },
                CONNECT: {
                  actions: ['extendTimeout', 'persist', 'resetClock', emit(({ event }) => ({ type: 'reply', reqId: event.reqId, ok: true, value: { resumed: false } }) as const)],
                },
              },
            },
            pausing: {
              on: BUSY_FREEZER,
              invoke: {
                src: 'pause',
                input: ({ context }) => ({ handle: context.handle }),
                onDone: [
                  { guard: 'doomed', target: '#sandbox.draining', actions: ['replyOk', 'clearPending'] },
                  { target: 'paused', actions: ['replyOk', 'clearPending'] },
                ],
                onError: [
                  // A DESTROY/DRAIN/EXPIRE that arrived meanwhile still wins.
                  { guard: 'doomed', target: '#sandbox.draining', actions: 'failRequest' },
                  { target: 'exec', actions: 'failRequest' },
                ],
              },
            },
            // The backend freezes the sandbox during the copy; running commands just wait.
            snapshotting: {
              on: { ...BUSY, EXEC: { actions: 'rejectBusy' } },
              invoke: {
                src: 'snapshot',
                input: ({ context, event }) => ({ handle: context.handle, snapshotID: event.type === 'SNAPSHOT' ? event.snapshotID : '' }),
                onDone: [
                  { guard: 'doomed', target: '#sandbox.draining', actions: ['replyValue', 'clearPending'] },
                  { target: 'exec', actions: ['replyValue', 'clearPending'] },
                ],
                onError: [
                  { guard: 'doomed', target: '#sandbox.draining', actions: ['recordError', 'replyError', 'clearPending'] },
                  { target: 'exec', actions: ['recordError', 'replyError', 'clearPending'] },
                ],
              },
            },
            snapshottingPaused: {
              on: BUSY,
              invoke: {
                src: 'snapshot',
                input: ({ context, event }) => ({ handle: context.handle, snapshotID: event.type === 'SNAPSHOT' ? event.snapshotID : '' }),
                onDone: [
                  { guard: 'doomed', target: '#sandbox.draining', actions: ['replyValue', 'clearPending'] },
                  { target: 'paused', actions: ['replyValue', 'clearPending'] },
                ],
                onError: [
                  { guard: 'doomed', target: '#sandbox.draining', actions: ['recordError', 'replyError', 'clearPending'] },
                  { target: 'paused', actions: ['recordError', 'replyError', 'clearPending'] },
                ],
              },
            },
            paused: {
              id: 'paused',
              on: {
                SNAPSHOT: { target: 'snapshottingPaused', actions: 'takePending' },
                RESUME: { target: 'resuming', actions: 'takePending' },
                CONNECT: { target: 'resuming', actions: ['takePending', 'extendTimeout', 'persist', 'resetClock'] },
              },
            },
            resuming: {
              on: BUSY_FREEZER,
              invoke: {
                src: 'resume',
                input: ({ context }) => ({ handle: context.handle }),
                onDone: [
                  { guard: 'doomed', target: '#sandbox.draining', actions: ['replyOk', 'clearPending'] },
                  // exec falls through to ready when nothing runs.
                  { target: 'exec', actions: [emit(({ context }) => ({ type: 'reply', reqId: context.pending ?? '', ok: true, value: { resumed: true } }) as const), 'clearPending'] },
                ],
                onError: [
                  { guard: 'doomed', target: '#sandbox.draining', actions: 'failRequest' },
                  { target: 'paused', actions: 'failRequest' },
                ],
              },
            },
          },
        },
        clock: {
          initial: 'ticking',
          states: {
            ticking: {
              entry: 'scheduleExpiry',
              on: { RESET_CLOCK: { target: 'ticking', reenter: true } },
            },
          },
        },
      },
    },
    draining: {
      entry: 'stopAllProcesses',
      // Anything asked of a sandbox on its way out is a conflict; DESTROY is simply already happening.
      on: { DESTROY: {}, DRAIN: {} },
      invoke: {
        src: 'teardown',
        input: ({ context }) => ({ handle: context.handle, id: context.id }),
        onDone: { target: 'gone', actions: [assign({ endAt: () => Date.now() })] },
        onError: {
          target: 'failed',
          actions: 'recordError',
        },
      },
    },
    gone: {
      type: 'final',
      // A create that was doomed before it completed still gets its answer.
      entry: ['forget', enqueueActions(({ enqueue, context }) => {
        if (context.pending) {
          enqueue.emit({ type: 'reply', reqId: context.pending, ok: false, error: fail('conflict', 'sandbox was destroyed while it was being created') });
          enqueue.assign({ pending: null });
        }
      })],
    },
    failed: {
      type: 'final',
      entry: ['forget', 'replyError', 'clearPending'],
    },
  },
  output: ({ context }) => ({ id: context.id, error: context.error }),
});

export type { ProcessOutput };

/** A state value as words, for error messages ("paused", "pausing", ...). */
export function describe(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const v = value as Record<string, unknown>;
    if ('live' in v) return describe((v.live as Record<string, unknown>).activity);
    const [k, inner] = Object.entries(v)[0] ?? ['unknown', undefined];
    return inner === undefined ? k : describe(inner);
  }
  return 'unknown';
}
