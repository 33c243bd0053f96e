// One running command inside a sandbox: started, fed stdin, signalled, ended exactly once.
// The `run` effect (provided from src/) starts the command and reports EXITED; output bytes go
// straight to the opaque `channel` so they never queue up as machine events.
import { assign, fromCallback, sendTo, setup } from 'xstate';
import { asFailure, type ExecRequest, type Failure, type ProcessExit } from './types.ts';

export interface ProcessInput {
  processId: string;
  request: ExecRequest;
  /** Backend handle of the sandbox (opaque). */
  handle: unknown;
  /** Output sink owned by src/ (opaque). */
  channel: unknown;
}

export interface ProcessContext extends ProcessInput {
  exit: ProcessExit | null;
}

export type RunnerCommand =
  | { type: 'STDIN'; data: Uint8Array }
  | { type: 'CLOSE_STDIN' }
  // reason: why the gateway itself sends it ('timeout'), so the exit can say so.
  | { type: 'SIGNAL'; signal: string; reason?: string }
  // a command on a terminal (ExecRequest.pty): its new window size
  | { type: 'RESIZE'; cols: number; rows: number };

export type ProcessEvent = RunnerCommand | { type: 'EXITED'; exit: ProcessExit };

export interface ProcessOutput {
  processId: string;
  exit: ProcessExit;
}

/** How long a command killed at its deadline may take to report its exit before we give up on it. */
const KILL_GRACE_MS = 5_000;

export const processMachine = setup({
  types: {
    context: {} as ProcessContext,
    input: {} as ProcessInput,
    events: {} as ProcessEvent,
    output: {} as ProcessOutput,
  },
  actors: {
    // Placeholder: src/ provides the real runner with machine.provide().
    run: fromCallback<RunnerCommand, Omit<ProcessInput, 'processId'>>(() => () => {}),
  },
  delays: {
    deadline: ({ context }) => context.request.timeoutMs,
    killGrace: KILL_GRACE_MS,
  },
  guards: {
    hasDeadline: ({ context }) => context.request.timeoutMs > 0,
  },
  actions: {
    recordExit: assign({
      exit: ({ context, event }) => {
        if (event.type !== 'EXITED') return context.exit;
        // A kill we issued for the deadline is reported as such, whatever the runtime said.
        return context.exit?.reason ? { ...event.exit, reason: context.exit.reason } : event.exit;
      },
    }),
    markTimeout: assign({ exit: () => ({ exitCode: null, signal: 'SIGKILL', reason: 'timeout' }) }),
  },
}).createMachine({
  id: 'process',
  context: ({ input }) => ({ ...input, exit: null }),
  initial: 'alive',
  states: {
    alive: {
      invoke: {
        id: 'runner',
        src: 'run',
        input: ({ context }) => ({ request: context.request, handle: context.handle, channel: context.channel }),
        onError: {
          target: 'exited',
          actions: assign({
            exit: ({ event }) => ({ exitCode: null, signal: null, error: asFailure(event.error) }),
          }),
        },
      },
      on: {
        EXITED: { target: 'exited', actions: 'recordExit' },
        STDIN: { actions: sendTo('runner', ({ event }) => event) },
        CLOSE_STDIN: { actions: sendTo('runner', ({ event }) => event) },
        SIGNAL: { actions: sendTo('runner', ({ event }) => event) },
        RESIZE: { actions: sendTo('runner', ({ event }) => event) },
      },
      initial: 'running',
      states: {
        running: {
          after: { deadline: { guard: 'hasDeadline', target: 'killing' } },
        },
        killing: {
          entry: ['markTimeout', sendTo('runner', { type: 'SIGNAL', signal: 'SIGKILL', reason: 'timeout' })],
          after: { killGrace: { target: '#process.exited' } },
        },
      },
    },
    exited: { type: 'final' },
  },
  output: ({ context }) => ({
    processId: context.processId,
    exit: context.exit ?? { exitCode: null, signal: null, reason: 'lost' },
  }),
});
