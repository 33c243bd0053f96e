// Placement: where one create (or fork) gets its sandbox. The gateway spawns one per request.
//
//   start --(fork)--> snapshotting --> cold
//     |--(a slot pool can serve it)--> takingSlot --(slot)--> checkingOut --> placed
//     |                                     \--(none)--> cold        \--(conflict, < 3 tries)--> takingSlot
//     `--> cold --> placed                                              \--(conflict, 3rd)--> cold
//   placed | failed --> (dropSnapshot, if one was taken) --> done: the one reply
//
// A pool hit is a frozen slot checked out (a thaw plus bookkeeping); only a request a slot can
// serve as it is goes there: standard limits, no snapshot, no egress (slots are made without it).
// A slot can vanish between TAKE and CHECKOUT (drained, failed): the next one is tried, three at
// most, then the create goes cold. A fork is a snapshot of the source, a cold create from it, and
// the snapshot dropped afterwards whatever happened (the create consumes it on success).
import { assign, emit, fromPromise, setup } from 'xstate';
import { asFailure, type BackendKind, type Failure, type Limits, type Reply } from './types.ts';

/** The sandbox a placement asks for (the gateway resolved the template and its backend). */
export interface PlacementRequest {
  template: string;
  backend: BackendKind;
  timeoutMs: number;
  limits: Limits;
  /** The limits are the backend's defaults (what a pool slot was made with). */
  standardLimits: boolean;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  internet: boolean;
  fromSnapshot?: { snapshotID: string; consume?: boolean };
  /** Fork: the files come from a snapshot of this sandbox, taken first. */
  forkOf?: string;
}

export interface PlacementInput {
  reqId: string;
  request: PlacementRequest;
  /** This template has a pool of frozen slots the gateway keeps. */
  slotPool: boolean;
}

/** What the reply carries: the sandbox, and whether it came from the pool. */
export interface Placed {
  sandboxId: string;
  via: 'pool' | 'cold';
}

export interface PlacementContext extends PlacementInput {
  attempts: number;
  slot: string | null;
  snapshot: { snapshotID: string; backend: BackendKind } | null;
  placed: Placed | null;
  error: Failure | null;
}

/** A sandbox to spawn cold: everything but its id, which the effect chooses. */
export type ColdSpawn = Omit<PlacementRequest, 'standardLimits' | 'forkOf'>;

export const SLOT_ATTEMPTS = 3;

const isConflict = (error: unknown) => asFailure(error).code === 'conflict';

export const placementMachine = setup({
  types: {
    context: {} as PlacementContext,
    input: {} as PlacementInput,
    emitted: {} as Reply,
  },
  actors: {
    // Placeholders; src/actors provides them.
    snapshot: fromPromise<{ snapshotID: string; backend: BackendKind }, { sandboxId: string }>(async () => {
      throw new Error('snapshot not provided');
    }),
    takeSlot: fromPromise<{ slot: string | null }, { template: string }>(async () => ({ slot: null })),
    checkout: fromPromise<void, { slot: string; timeoutMs: number; metadata?: Record<string, string>; envVars?: Record<string, string> }>(
      async () => {},
    ),
    spawnCold: fromPromise<string, ColdSpawn>(async () => {
      throw new Error('spawnCold not provided');
    }),
    dropSnapshot: fromPromise<void, { snapshotID: string; backend: BackendKind }>(async () => {}),
  },
  guards: {
    forking: ({ context }) => context.request.forkOf !== undefined,
    slotCanServe: ({ context }) => {
      const r = context.request;
      return context.slotPool && r.standardLimits && !r.fromSnapshot && !r.internet;
    },
    gotSlot: ({ event }) => (event as unknown as { output: { slot: string | null } }).output.slot !== null,
    conflictWithTriesLeft: ({ context, event }) =>
      isConflict((event as { error?: unknown }).error) && context.attempts + 1 < SLOT_ATTEMPTS,
    conflict: ({ event }) => isConflict((event as { error?: unknown }).error),
    tookSnapshot: ({ context }) => context.snapshot !== null,
  },
  actions: {
    recordError: assign({ error: ({ event }) => asFailure((event as { error?: unknown }).error) }),
    reply: emit(({ context }): Reply =>
      context.placed
        ? { type: 'reply', reqId: context.reqId, ok: true, value: context.placed }
        : { type: 'reply', reqId: context.reqId, ok: false, error: context.error ?? { code: 'internal', message: 'placement failed' } },
    ),
  },
}).createMachine({
  id: 'placement',
  context: ({ input }) => ({ ...input, attempts: 0, slot: null, snapshot: null, placed: null, error: null }),
  initial: 'start',
  states: {
    start: {
      always: [
        { guard: 'forking', target: 'snapshotting' },
        { guard: 'slotCanServe', target: 'takingSlot' },
        { target: 'cold' },
      ],
    },
    snapshotting: {
      invoke: {
        src: 'snapshot',
        input: ({ context }) => ({ sandboxId: context.request.forkOf! }),
        onDone: {
          target: 'cold',
          actions: assign({
            snapshot: ({ event }) => event.output,
            request: ({ context, event }) => ({ ...context.request, fromSnapshot: { snapshotID: event.output.snapshotID, consume: true } }),
          }),
        },
        onError: { target: 'failed', actions: 'recordError' },
      },
    },
    takingSlot: {
      invoke: {
        src: 'takeSlot',
        input: ({ context }) => ({ template: context.request.template }),
        onDone: [
          { guard: 'gotSlot', target: 'checkingOut', actions: assign({ slot: ({ event }) => event.output.slot }) },
          { target: 'cold' },
        ],
        onError: { target: 'failed', actions: 'recordError' },
      },
    },
    checkingOut: {
      invoke: {
        src: 'checkout',
        input: ({ context }) => ({
          slot: context.slot!,
          timeoutMs: context.request.timeoutMs,
          metadata: context.request.metadata,
          envVars: context.request.envVars,
        }),
        onDone: { target: 'placed', actions: assign({ placed: ({ context }) => ({ sandboxId: context.slot!, via: 'pool' as const }) }) },
        onError: [
          { guard: 'conflictWithTriesLeft', target: 'takingSlot', actions: assign({ attempts: ({ context }) => context.attempts + 1 }) },
          { guard: 'conflict', target: 'cold' },
          { target: 'failed', actions: 'recordError' },
        ],
      },
    },
    cold: {
      invoke: {
        src: 'spawnCold',
        input: ({ context }) => {
          const { standardLimits: _s, forkOf: _f, ...spawn } = context.request;
          return spawn;
        },
        onDone: { target: 'placed', actions: assign({ placed: ({ event }) => ({ sandboxId: event.output, via: 'cold' as const }) }) },
        onError: { target: 'failed', actions: 'recordError' },
      },
    },
    placed: { always: 'finishing' },
    failed: { always: 'finishing' },
    finishing: {
      always: [{ guard: 'tookSnapshot', target: 'droppingSnapshot' }, { target: 'done' }],
    },
    // Used up by the create on success; removed here if the create failed before it.
    droppingSnapshot: {
      invoke: {
        src: 'dropSnapshot',
        input: ({ context }) => context.snapshot!,
        onDone: 'done',
        onError: 'done',
      },
    },
    done: { type: 'final', entry: 'reply' },
  },
  output: ({ context }) => ({ placed: context.placed, error: context.error }),
});
