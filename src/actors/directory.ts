// The directory of sandboxes: find a caller's sandbox by id (404 otherwise), list them, count them.
// Pool slots nobody has taken are the pool's, never a caller's: they are skipped everywhere here.
import type { Actor, AnyActorRef, AnyStateMachine } from 'xstate';
import type { GatewayContext } from '../../machines/gateway.ts';
import type { PoolContext } from '../../machines/pool.ts';
import { notFound } from '../errors.ts';
import type { SandboxView } from '../protocol/views.ts';
import { SANDBOX_ID } from './ids.ts';
import { isPoolSlot, publicState, toView, type SandboxSnapshot } from './views.ts';

export class SandboxDirectory {
  constructor(private readonly root: Actor<AnyStateMachine>) {}

  private get context(): GatewayContext {
    return this.root.getSnapshot().context as GatewayContext;
  }

  /** A caller's live sandbox actor (404 for unknown ids, finished sandboxes and pool slots). */
  ref(id: string): AnyActorRef {
    const ref = SANDBOX_ID.test(id) ? this.root.system.get(`sandbox:${id}`) : undefined;
    const s = ref?.getSnapshot() as SandboxSnapshot | undefined;
    if (!ref || s?.status !== 'active' || isPoolSlot(s)) throw notFound(`sandbox "${id}"`);
    return ref;
  }

  snapshot(id: string): SandboxSnapshot {
    return this.ref(id).getSnapshot() as SandboxSnapshot;
  }

  view(id: string): SandboxView {
    return toView(this.snapshot(id));
  }

  list(): SandboxView[] {
    const views: SandboxView[] = [];
    for (const ref of this.all()) {
      const s = ref.getSnapshot() as SandboxSnapshot;
      if (s.status === 'active' && !isPoolSlot(s)) views.push(toView(s));
    }
    return views;
  }

  /** Every sandbox actor, pool slots included (they live in the shards too). */
  *all(): Generator<AnyActorRef> {
    for (const shard of this.context.shards) {
      for (const child of Object.values(shard.getSnapshot().children)) if (child) yield child as AnyActorRef;
    }
  }

  /** The memory limits of every sandbox actor still alive (pool slots included), in MiB. */
  committedMemoryMiB(): number {
    let sum = 0;
    for (const ref of this.all()) {
      const s = ref.getSnapshot() as SandboxSnapshot;
      if (s.status === 'active') sum += s.context.limits.memoryMiB;
    }
    return sum;
  }

  /** Sandboxes by `state|backend`, for the gauges. */
  countByState(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const ref of this.all()) {
      const s = ref.getSnapshot() as SandboxSnapshot;
      const key = `${publicState(s)}|${s.context.backend}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return counts;
  }

  /**
   * Live caller sandboxes, from the shards' own counts minus the pools' parked slots: O(shards),
   * never a walk over every sandbox (that made each create O(N), so N creates O(N^2)).
   */
  liveCount(): number {
    const c = this.context;
    let n = 0;
    for (const shard of c.shards) n += shard.getSnapshot().context.live;
    for (const pool of Object.values(c.pools)) n -= (pool.getSnapshot().context as PoolContext).slots.length;
    return Math.max(0, n);
  }
}
