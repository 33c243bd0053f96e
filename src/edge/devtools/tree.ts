// The live supervisor tree as JSON: gateway -> registry, pools, shards -> sandboxes -> processes
// (and the effects each one is running: provision, teardown, run, ...). Read from snapshots only.
import type { AnyActorRef } from 'xstate';
import { describeState as describe } from '../../actors/types.ts';
import type { Gateway } from '../../actors/gateway.ts';
import { sanitizeContext, str, type ActorKind } from './sanitize.ts';

export interface ActorNode {
  /** Unique for the gateway's life (xstate's sessionId, e.g. "x:42"). */
  sessionId: string;
  /** The id under its parent: "shard-3", "k3j2...", "proc:7", "registry", "provision". */
  id: string;
  systemId: string | null;
  kind: ActorKind;
  /** For effects: the name of the invoked logic ("provision", "run", ...). */
  src: string | null;
  parent: string | null;
  /** The sandbox this actor belongs to (itself, or its ancestor), if any. */
  sandbox: string | null;
  status: string;
  /** The statechart value, as xstate gives it (string or nested object). */
  value: unknown;
  /** The value in a few words ("ready", "paused", "serving", "draining"). */
  state: string | null;
  context?: unknown;
  children?: ActorNode[];
}

export interface Tree {
  ts: number;
  lifecycle: string;
  filter: { sandbox: string | null };
  counts: { actors: number; sandboxes: number; processes: number };
  root: ActorNode;
}

const MACHINE_KINDS = new Set<ActorKind>(['gateway', 'registry', 'pool', 'shard', 'sandbox', 'process']);

type Ref = AnyActorRef & { logic?: { config?: { id?: unknown } }; src?: unknown; _parent?: AnyActorRef; systemId?: string };

export const systemIdOf = (ref: AnyActorRef): string | null => (ref as Ref).systemId ?? null;

export function kindOf(ref: AnyActorRef): ActorKind {
  const id = (ref as Ref).logic?.config?.id;
  return typeof id === 'string' && MACHINE_KINDS.has(id as ActorKind) ? (id as ActorKind) : 'effect';
}

const sandboxCache = new WeakMap<object, string | null>();

/** The sandbox an actor belongs to: itself, or the nearest `sandbox:<id>` ancestor. */
export function sandboxOf(ref: AnyActorRef | undefined): string | null {
  if (!ref) return null;
  const cached = sandboxCache.get(ref);
  if (cached !== undefined) return cached;
  let out: string | null = null;
  for (let r: Ref | undefined = ref as Ref, i = 0; r && i < 8; r = r._parent as Ref | undefined, i++) {
    const sid = r.systemId;
    if (sid?.startsWith('sandbox:')) {
      out = sid.slice('sandbox:'.length);
      break;
    }
    // process:<sandbox>:<pid> names its sandbox.
    if (sid?.startsWith('process:')) {
      out = sid.split(':')[1] ?? null;
      break;
    }
  }
  // Final: systemIds are set in the actor's constructor (never call this from an `@xstate.actor`
  // inspection callback itself, which runs just before).
  sandboxCache.set(ref, out);
  return out;
}

/** One state value in words; the gateway by its top-level state (draining has parallel regions). */
export function stateWords(kind: ActorKind, value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (kind === 'gateway' && typeof value === 'object') return Object.keys(value as object)[0] ?? null;
  if (kind === 'pool' && typeof value === 'object') {
    const active = (value as { active?: { supply?: unknown } }).active;
    if (active && typeof active.supply === 'string') return active.supply;
  }
  return describe(value);
}

/** A node for one actor, without its children. */
export function describeActor(ref: AnyActorRef, withContext = true): ActorNode {
  const r = ref as Ref;
  const kind = kindOf(ref);
  const snap = ref.getSnapshot() as { status?: string; value?: unknown; context?: unknown } | undefined;
  const node: ActorNode = {
    sessionId: ref.sessionId,
    id: str(ref.id, 200) ?? '',
    systemId: r.systemId ?? null,
    kind,
    src: kind === 'effect' && typeof r.src === 'string' ? r.src : null,
    parent: r._parent?.sessionId ?? null,
    sandbox: sandboxOf(ref),
    status: snap?.status ?? 'unknown',
    value: kind === 'effect' ? null : (snap?.value ?? null),
    state: kind === 'effect' ? null : stateWords(kind, snap?.value),
  };
  if (withContext) {
    const ctx = sanitizeContext(kind, snap?.context);
    if (ctx !== undefined) node.context = ctx;
  }
  return node;
}

function childrenOf(ref: AnyActorRef): AnyActorRef[] {
  const children = (ref.getSnapshot() as { children?: Record<string, AnyActorRef | undefined> }).children ?? {};
  return Object.values(children).filter((c): c is AnyActorRef => !!c);
}

export interface TreeOptions {
  /** Only this sandbox (and the path to it: gateway, its shard). */
  sandbox?: string | null;
  /** Leave out shards with no sandboxes (default false). */
  compact?: boolean;
}

export function buildTree(gw: Gateway, opts: TreeOptions = {}): Tree {
  const counts = { actors: 0, sandboxes: 0, processes: 0 };
  const filter = opts.sandbox ?? null;
  const walk = (ref: AnyActorRef, depth: number): ActorNode | null => {
    const node = describeActor(ref);
    if (filter && node.kind === 'sandbox' && node.sandbox !== filter) return null;
    const kids: ActorNode[] = [];
    if (depth < 8) {
      for (const c of childrenOf(ref)) {
        const n = walk(c, depth + 1);
        if (n) kids.push(n);
      }
    }
    if (node.kind === 'shard' && kids.length === 0 && (opts.compact || filter)) return null;
    counts.actors += 1;
    if (node.kind === 'sandbox') counts.sandboxes += 1;
    if (node.kind === 'process') counts.processes += 1;
    node.children = kids;
    return node;
  };
  const root = walk(gw.actor, 0)!;
  return { ts: Date.now(), lifecycle: gw.lifecycle, filter: { sandbox: filter }, counts, root };
}
