// A log line per lifecycle transition of the gateway and of every sandbox, from the actor
// system's inspection stream (only installed when info lines are written: it costs every event).
import type { Actor, AnyStateMachine } from 'xstate';
import { describe } from '../../machines/sandbox.ts';
import type { Logger } from '../log.ts';
import type { SandboxSnapshot } from './views.ts';

export function logLifecycle(root: Actor<AnyStateMachine>, log: Logger): void {
  const last = new WeakMap<object, string>();
  root.system.inspect({
    next: (ev) => {
      if (ev.type !== '@xstate.snapshot') return;
      const systemId = (ev.actorRef as { systemId?: string }).systemId;
      const isGateway = ev.actorRef === root;
      if (!isGateway && !systemId?.startsWith('sandbox:')) return;
      const snap = ev.snapshot as unknown as SandboxSnapshot;
      // The gateway is logged by its top-level state (draining has parallel regions inside).
      const state = isGateway && typeof snap.value === 'object' && snap.value ? Object.keys(snap.value)[0]! : describe(snap.value);
      if (last.get(ev.actorRef) === state) return;
      last.set(ev.actorRef, state);
      if (isGateway) log.info({ gateway: state }, `gateway ${state}`);
      else {
        const c = snap.context;
        log.info(
          { sandbox: c.id, template: c.template, backend: c.backend, state, ...(c.error ? { error: c.error.message } : {}) },
          `sandbox ${c.id} ${state}`,
        );
      }
    },
  });
}
