// What the devtools may show of an actor's context or an event: a WHITELIST, never a blacklist.
// Everything is projected field by field into plain JSON; what is not named here is not shown.
// Never shown: API keys and tokens (the edge never puts them in the actor tree, and nothing here
// would copy them), envVars/env VALUES (only their names), stdin bytes (only their count), output
// channels, backend handles (paths, vm names, SSH connections), pending reqIds' waiters.

export type ActorKind = 'gateway' | 'registry' | 'pool' | 'shard' | 'sandbox' | 'process' | 'effect';

const MAX_STRING = 500;
const MAX_ARRAY = 100;
const MAX_DEPTH = 5;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function str(v: unknown, max = MAX_STRING): string | null {
  if (v === null || v === undefined) return null;
  const s = typeof v === 'string' ? v : String(v);
  return s.length > max ? `${s.slice(0, max)}…(${s.length} chars)` : s;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const bool = (v: unknown): boolean | null => (typeof v === 'boolean' ? v : null);

/** Names only, never values. */
const keysOf = (v: unknown): string[] => (isObj(v) ? Object.keys(v).slice(0, MAX_ARRAY).map((k) => str(k, 128)!) : []);

/** A string map whose keys are user-chosen labels (metadata): values truncated, nothing nested. */
function labels(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObj(v)) return out;
  for (const [k, val] of Object.entries(v).slice(0, 64)) out[str(k, 128)!] = str(val, 256) ?? '';
  return out;
}

export function errorInfo(e: unknown): { code: string | null; message: string | null } | null {
  if (e === null || e === undefined) return null;
  if (isObj(e) || e instanceof Error) {
    const o = e as Obj;
    return { code: typeof o.code === 'string' ? str(o.code, 64) : null, message: str(o.message) };
  }
  return { code: null, message: str(e) };
}

function limits(v: unknown) {
  if (!isObj(v)) return null;
  return { memoryMiB: num(v.memoryMiB), cpus: num(v.cpus), pids: num(v.pids) };
}

function exitInfo(v: unknown) {
  if (!isObj(v)) return null;
  return {
    exitCode: num(v.exitCode),
    signal: str(v.signal, 32),
    ...(v.reason !== undefined ? { reason: str(v.reason, 64) } : {}),
    ...(v.error !== undefined ? { error: errorInfo(v.error) } : {}),
  };
}

function fromSnapshot(v: unknown) {
  if (!isObj(v)) return null;
  return { snapshotID: str(v.snapshotID, 64), consume: bool(v.consume) };
}

function byteCount(v: unknown): number | null {
  if (v instanceof Uint8Array) return v.byteLength;
  if (typeof v === 'string') return Buffer.byteLength(v);
  return null;
}

/** An exec request: the command and its shape; env names only, stdin as a byte count. */
export function execRequest(v: unknown) {
  if (!isObj(v)) return null;
  return {
    argv: Array.isArray(v.argv) ? v.argv.slice(0, 64).map((a) => str(a, 200)) : [],
    cwd: str(v.cwd, 200),
    user: str(v.user, 64),
    timeoutMs: num(v.timeoutMs),
    env: keysOf(v.env),
    stdinBytes: byteCount(v.stdin),
    keepStdinOpen: bool(v.keepStdinOpen),
  };
}

function sandboxInput(v: unknown) {
  if (!isObj(v)) return null;
  return {
    id: str(v.id, 64),
    template: str(v.template, 64),
    backend: str(v.backend, 16),
    timeoutMs: num(v.timeoutMs),
    limits: limits(v.limits),
    metadata: labels(v.metadata),
    envVars: keysOf(v.envVars),
    pooled: bool(v.pooled),
    fromSnapshot: fromSnapshot(v.fromSnapshot),
    ...(isObj(v.adopt) ? { adopt: { ip: str(v.adopt.ip, 64), paused: bool(v.adopt.paused), endAt: num(v.adopt.endAt) } } : {}),
  };
}

function templates(v: unknown) {
  return Array.isArray(v)
    ? v.slice(0, 1000).map((t) => (isObj(t) ? { name: str(t.name, 64), backend: str(t.backend, 16), path: str(t.path, 300) } : null))
    : [];
}

/** The whitelisted view of one actor's context, by kind. */
export function sanitizeContext(kind: ActorKind, context: unknown): Json | undefined {
  if (!isObj(context)) return undefined;
  const c = context;
  switch (kind) {
    case 'gateway':
      return {
        shards: Array.isArray(c.shards) ? c.shards.length : null,
        pools: keysOf(c.pools),
        drainedShards: num(c.drainedShards),
        drainedPools: num(c.drainedPools),
        drainDeadlineMs: num(c.drainDeadlineMs),
        stopReason: str(c.stopReason, 32),
        error: errorInfo(c.error),
      };
    case 'registry':
      return {
        templates: templates(c.templates),
        warnings: Array.isArray(c.warnings) ? c.warnings.slice(0, 50).map((w) => str(w)) : [],
        scannedAt: num(c.scannedAt),
        waiting: (Array.isArray(c.waiters) ? c.waiters.length : 0) + (Array.isArray(c.later) ? c.later.length : 0),
        error: errorInfo(c.error),
      };
    case 'pool':
      return {
        template: str(c.template, 64),
        backend: str(c.backend, 16),
        available: num(c.available),
        inUse: num(c.inUse),
        target: num(c.target),
        progress: str(c.progress),
        refreshMs: num(c.refreshMs),
        refreshedAt: num(c.refreshedAt),
        error: errorInfo(c.error),
      };
    case 'shard':
      return { index: num(c.index), live: num(c.live), draining: bool(c.draining) };
    case 'sandbox':
      return {
        id: str(c.id, 64),
        template: str(c.template, 64),
        backend: str(c.backend, 16),
        pooled: bool(c.pooled),
        ip: str(c.ip, 64),
        timeoutMs: num(c.timeoutMs),
        limits: limits(c.limits),
        metadata: labels(c.metadata),
        envVars: keysOf(c.envVars),
        fromSnapshot: fromSnapshot(c.fromSnapshot),
        createdAt: num(c.createdAt),
        startedAt: num(c.startedAt),
        endAt: num(c.endAt),
        procs: Array.isArray(c.procs) ? c.procs.slice(0, MAX_ARRAY).map((p) => str(p, 64)) : [],
        doomed: bool(c.doomed),
        startPaused: bool(c.startPaused),
        error: errorInfo(c.error),
      };
    case 'process':
      return { processId: str(c.processId, 32), request: execRequest(c.request), exit: exitInfo(c.exit) };
    default:
      return undefined;
  }
}

// ---- events ----

/** Fields any event may carry that are safe as short scalars. */
const SCALAR_FIELDS = ['reqId', 'actorId', 'processId', 'snapshotID', 'signal', 'reason', 'line', 'count', 'index', 'timeoutMs'] as const;

/** Keys allowed inside the output of a finished effect or child (a done event), at any depth. */
const OUTPUT_KEYS = new Set([
  'id', 'ip', 'processId', 'exit', 'exitCode', 'signal', 'reason', 'error', 'code', 'message', 'template', 'backend',
  'available', 'inUse', 'snapshotID', 'sandboxID', 'createdAt', 'sizeBytes', 'templates', 'name', 'path', 'warnings',
  'stopReason', 'resumed',
]);

/** Whitelist-by-key projection for outputs whose exact shape depends on the effect. */
function pick(v: unknown, depth = 0): Json {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') return str(v);
  if (typeof v === 'bigint') return String(v);
  if (v instanceof Uint8Array) return { bytes: v.byteLength };
  if (depth >= MAX_DEPTH) return '…';
  if (Array.isArray(v)) return v.slice(0, MAX_ARRAY).map((x) => pick(x, depth + 1));
  if (v instanceof Error) return errorInfo(v);
  if (!isObj(v)) return null;
  // Actor refs and other class instances are never walked.
  if (Object.getPrototypeOf(v) !== Object.prototype && Object.getPrototypeOf(v) !== null) return null;
  const out: Record<string, Json> = {};
  for (const [k, val] of Object.entries(v)) if (OUTPUT_KEYS.has(k)) out[k] = pick(val, depth + 1);
  return out;
}

/** The whitelisted view of an event sent to an actor. */
export function sanitizeEvent(event: unknown): Json {
  if (!isObj(event)) return { type: 'unknown' };
  const type = str(event.type, 200) ?? 'unknown';
  const e = event;
  switch (type) {
    case 'SPAWN':
      return { type, reqId: str(e.reqId, 64), input: sandboxInput(e.input) };
    case 'EXEC':
      return { type, reqId: str(e.reqId, 64), processId: str(e.processId, 32), request: execRequest(e.request) };
    case 'STDIN':
      return { type, bytes: byteCount(e.data) };
    case 'EXITED':
      return { type, exit: exitInfo(e.exit) };
    case 'TEMPLATES':
      return { type, templates: templates(e.templates) };
    case 'SANDBOX_FAULT':
      return { type, actorId: str(e.actorId, 200), error: errorInfo(e.error) };
    // xstate's own: the init event carries the actor's input (may hold envVars): type only.
    case 'xstate.init':
    case 'xstate.stop':
    case 'xstate.promise.resolve':
    case 'xstate.promise.reject':
      return { type };
  }
  if (type.startsWith('xstate.done.actor.')) return { type, actorId: str(e.actorId, 200), output: pick(e.output) };
  if (type.startsWith('xstate.error.actor.')) return { type, actorId: str(e.actorId, 200), error: errorInfo(e.error) };
  const out: Record<string, Json> = { type };
  for (const k of SCALAR_FIELDS) {
    const v = e[k];
    if (typeof v === 'string') out[k] = str(v, 300);
    else if (typeof v === 'number' && Number.isFinite(v)) out[k] = v;
  }
  return out;
}

/** The sandbox an event concerns, when the event itself says so (a shard's SPAWN, a child's done). */
export function eventSandbox(event: unknown): string | undefined {
  if (!isObj(event)) return undefined;
  if (event.type === 'SPAWN' && isObj(event.input) && typeof event.input.id === 'string') return event.input.id;
  if (typeof event.actorId === 'string' && /^[a-z0-9]{10}$/.test(event.actorId)) return event.actorId;
  return undefined;
}
