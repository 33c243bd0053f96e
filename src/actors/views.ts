// Wire views of actors (src/protocol/views.ts shapes) and the small lookups the facade shares.
import type { AnyActorRef } from 'xstate';
import type { GatewayContext } from '../../machines/gateway.ts';
import type { PoolContext } from '../../machines/pool.ts';
import { describe, type SandboxContext } from '../../machines/sandbox.ts';
import type { PoolView, PublicState, SandboxView } from '../protocol/views.ts';

export type SandboxSnapshot = { value: unknown; status: string; context: SandboxContext; matches(v: unknown): boolean };

export function publicState(s: SandboxSnapshot): PublicState {
  if (s.status !== 'active') return s.matches('failed') ? 'failed' : 'killed';
  if (s.matches('warm') || s.matches('checkout') || s.matches('boot')) return 'starting';
  if (s.matches('draining')) return 'stopping';
  if (s.matches({ live: { activity: 'paused' } }) || s.matches({ live: { activity: 'resuming' } })) return 'paused';
  return 'running';
}

/** Own keys only: a template named "constructor" must not find Object.prototype's. */
export const poolOf = (c: GatewayContext, template: string): AnyActorRef | undefined =>
  Object.hasOwn(c.pools, template) ? c.pools[template] : undefined;

/** A pool slot nobody has taken yet is the pool's, not a caller's sandbox. */
export const isPoolSlot = (s: SandboxSnapshot) => s.context.pooled && s.matches('warm');

export function poolView(ref: AnyActorRef): PoolView {
  const s = ref.getSnapshot();
  const c = s.context as PoolContext;
  const value = s.value as { active?: { supply?: string } } | string;
  return {
    template: c.template,
    backend: c.backend,
    state: typeof value === 'string' ? value : (value.active?.supply ?? 'unknown'),
    available: c.available,
    inUse: c.inUse,
    warming: c.target,
    progress: c.progress,
    refreshedAt: c.refreshedAt ? new Date(c.refreshedAt).toISOString() : null,
    error: c.error?.message ?? null,
    ...(c.accel ? { accel: c.accel } : {}),
  };
}

export function toView(s: SandboxSnapshot): SandboxView {
  const c = s.context;
  return {
    sandboxID: c.id,
    templateID: c.template,
    backend: c.backend,
    state: publicState(s),
    lifecycle: describe(s.value),
    ip: c.ip,
    startedAt: new Date(c.startedAt ?? c.createdAt).toISOString(),
    endAt: new Date(c.endAt).toISOString(),
    metadata: c.metadata,
    limits: c.limits,
    cpuCount: c.limits.cpus,
    memoryMB: c.limits.memoryMiB,
    processes: c.procs.length,
    allowInternetAccess: c.internet,
  };
}
