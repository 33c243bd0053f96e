// The template registry as an actor: it scans at birth and on RELOAD. A RELOAD that arrives while
// a scan runs is answered by a fresh scan after it (the running one may have read the disk before
// the change the caller is asking about). Running sandboxes never hear of it.
import { assign, enqueueActions, fromPromise, setup } from 'xstate';
import type { BackendKind, Failure, Reply } from './types.ts';

export interface TemplateEntry {
  name: string;
  path: string;
  backend: BackendKind;
}

export interface ScanResult {
  templates: TemplateEntry[];
  warnings: string[];
}

export interface RegistryContext extends ScanResult {
  waiters: string[];
  /** Waiters that arrived mid-scan: they need the next scan. */
  later: string[];
  scannedAt: number | null;
  error: Failure | null;
}

export type RegistryEvent = { type: 'RELOAD'; reqId: string };

export const registryMachine = setup({
  types: {
    context: {} as RegistryContext,
    events: {} as RegistryEvent,
    emitted: {} as Reply,
  },
  actors: {
    scan: fromPromise<ScanResult>(async () => ({ templates: [], warnings: [] })),
  },
  actions: {
    addWaiter: assign({ waiters: ({ context, event }) => [...context.waiters, event.reqId] }),
    // Tells whoever supervises the registry what the scan found (the gateway provides it).
    announce: () => {},
    answerWaiters: enqueueActions(({ enqueue, context }) => {
      for (const reqId of context.waiters) {
        if (context.error) enqueue.emit({ type: 'reply', reqId, ok: false, error: context.error });
        else enqueue.emit({ type: 'reply', reqId, ok: true, value: { templates: context.templates, warnings: context.warnings } });
      }
      enqueue.assign({ waiters: [] });
    }),
  },
}).createMachine({
  id: 'registry',
  context: { templates: [], warnings: [], waiters: [], later: [], scannedAt: null, error: null },
  initial: 'scanning',
  states: {
    scanning: {
      on: { RELOAD: { actions: assign({ later: ({ context, event }) => [...context.later, event.reqId] }) } },
      invoke: {
        src: 'scan',
        onDone: {
          target: 'settled',
          actions: [
            assign({
              templates: ({ event }) => event.output.templates,
              warnings: ({ event }) => event.output.warnings,
              scannedAt: () => Date.now(),
              error: null,
            }),
            'answerWaiters',
            'announce',
          ],
        },
        onError: {
          // A failed rescan keeps the last good list: running sandboxes and creates go on.
          target: 'settled',
          actions: [
            assign({ error: ({ event }) => ({ code: 'internal', message: `template scan failed: ${String((event.error as Error)?.message ?? event.error)}` }) }),
            'answerWaiters',
            'announce',
          ],
        },
      },
    },
    // Scan again for RELOADs that arrived mid-scan, else rest.
    settled: {
      always: [
        {
          guard: ({ context }) => context.later.length > 0,
          target: 'scanning',
          actions: assign({ waiters: ({ context }) => context.later, later: [] }),
        },
        { target: 'idle' },
      ],
    },
    idle: {
      on: { RELOAD: { target: 'scanning', actions: 'addWaiter' } },
    },
  },
});
