// One sandbox actor spawned through the gateway and waited for: the only way a placement's cold
// create and a pool's slot come to life (the gateway routes it to its shard).
import type { AnyActorRef } from 'xstate';
import type { SandboxInput } from './types.ts';
import { CoppiceError } from '../errors.ts';
import { freshSandboxId } from './ids.ts';
import { awaitReply, newReqId } from './request.ts';

export type ActorSystem = { get(id: string): AnyActorRef | undefined };

/** Spawn a sandbox (its id chosen here) and resolve with the id once it is ready (or parked). */
export async function spawnSandbox(system: ActorSystem, input: Omit<SandboxInput, 'id' | 'reqId'>, deadlineMs: number, what: string): Promise<string> {
  // Effects start while the actor system is mid-transition, when a send is only queued: step
  // out of it first, so the SPAWN below is processed (and the sandbox spawned) before send returns.
  await new Promise((r) => setImmediate(r));
  const gateway = system.get('gateway');
  if (!gateway) throw new CoppiceError('internal', 'gateway actor not found');
  const id = freshSandboxId((x) => system.get(`sandbox:${x}`) !== undefined);
  const reqId = newReqId();
  // A refusal (draining) is the gateway's reply; a sandbox's own reply says ready or failed.
  const refusal = awaitReply(gateway, reqId, deadlineMs, what);
  gateway.send({ type: 'SPAWN', reqId, input: { ...input, id } });
  const ref = system.get(`sandbox:${id}`);
  if (!ref) {
    await refusal.promise;
    throw new CoppiceError('internal', `${what} was not spawned`);
  }
  refusal.cancel();
  await awaitReply(ref, reqId, deadlineMs, what).promise;
  return id;
}
