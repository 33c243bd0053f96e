// The placement machine's effects: each one round trip to an actor (a pool, a sandbox) or one
// backend call. The decisions (pool or cold, retry, fork cleanup) are in machines/placement.ts.
import { fromPromise, type AnyActorRef } from 'xstate';
import { placementMachine, type ColdSpawn } from '../../machines/placement.ts';
import type { SnapshotRecord } from '../backends/types.ts';
import { hasSnapshots } from '../backends/capabilities.ts';
import { conflict, notFound, unsupported } from '../errors.ts';
import { backendFor, type Backends } from './effects.ts';
import { newSnapshotId } from './ids.ts';
import { newReqId, request } from './request.ts';
import { spawnSandbox } from './spawn.ts';

/** A cold create gets this long to be ready (a full backend create). */
export const COLD_CREATE_DEADLINE_MS = 120_000;

export function providePlacement(backends: Backends) {
  return placementMachine.provide({
    actors: {
      snapshot: fromPromise<{ snapshotID: string; backend: string }, { sandboxId: string }>(async ({ input, system }) => {
        const ref = system.get(`sandbox:${input.sandboxId}`) as AnyActorRef | undefined;
        if (!ref) throw notFound(`sandbox "${input.sandboxId}"`);
        const rec = await request<SnapshotRecord>(ref, { type: 'SNAPSHOT', reqId: newReqId(), snapshotID: newSnapshotId() }, 10 * 60_000);
        return { snapshotID: rec.snapshotID, backend: rec.backend };
      }),
      takeSlot: fromPromise<{ slot: string | null }, { template: string }>(async ({ input, system }) => {
        const pool = system.get(`pool:${input.template}`) as AnyActorRef | undefined;
        if (!pool || pool.getSnapshot().status !== 'active') return { slot: null };
        return request<{ slot: string | null }>(pool, { type: 'TAKE', reqId: newReqId() }, 5_000);
      }),
      checkout: fromPromise<void, { slot: string; timeoutMs: number; metadata?: Record<string, string>; envVars?: Record<string, string> }>(
        async ({ input, system }) => {
          const ref = system.get(`sandbox:${input.slot}`) as AnyActorRef | undefined;
          // Gone between TAKE and CHECKOUT: the same as a slot that refuses (try the next).
          if (!ref || ref.getSnapshot().status !== 'active') throw conflict(`pool slot ${input.slot} is gone`);
          const { slot: _slot, ...rest } = input;
          await request(ref, { type: 'CHECKOUT', reqId: newReqId(), ...rest }, 30_000);
        },
      ),
      spawnCold: fromPromise<string, ColdSpawn>(({ input, system }) =>
        spawnSandbox(system, input, COLD_CREATE_DEADLINE_MS, 'create'),
      ),
      dropSnapshot: fromPromise<void, { snapshotID: string; backend: string }>(async ({ input }) => {
        const b = backendFor(backends, input.backend);
        if (!hasSnapshots(b)) throw unsupported('delete snapshot', input.backend);
        await b.deleteSnapshot(input.snapshotID).catch(() => {});
      }),
    },
  });
}
