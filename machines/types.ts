// Plain data types shared by the statecharts. Machines import nothing from src/: effects and the
// objects they move around (backend handles, output channels) are opaque here.

/** Which isolation class serves a template (the registry's word; machines never branch on it). */
export type BackendKind = string;

/** A failure as machines carry it: `code` is one of the gateway's stable error codes. */
export interface Failure {
  code: string;
  message: string;
  field?: string;
}

/**
 * What an effect's error becomes inside a machine. Only the gateway's own errors (named
 * `CoppiceError`, see src/errors.ts) keep their code; a raw errno (`ENOENT`...) or anything else
 * from an effect is a backend failure.
 */
export function asFailure(error: unknown): Failure {
  const e = error as (Partial<Failure> & { name?: unknown }) | undefined;
  const own = typeof e?.code === 'string' && e.name === 'CoppiceError';
  const field = own && typeof e.field === 'string' ? { field: e.field } : {};
  return { code: own ? e.code! : 'backend_failed', message: e?.message ?? String(error), ...field };
}

/** Every request that wants an answer carries a reqId; the actor emits exactly one Reply for it. */
export type Reply =
  | { type: 'reply'; reqId: string; ok: true; value?: unknown }
  | { type: 'reply'; reqId: string; ok: false; error: Failure };

/** What a backend returned for a provisioned sandbox (opaque beyond ip). */
export interface Provisioned {
  ip: string;
  handle: unknown;
}

export interface Limits {
  memoryMiB: number;
  cpus: number;
  pids: number;
  /** Disk quota (MiB); absent = the backend's default. */
  diskMiB?: number;
}

export interface ExecRequest {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  /** 0 = no deadline. */
  timeoutMs: number;
  /** Bytes to write to stdin first (base64 is the edge's business; here raw). */
  stdin?: Uint8Array;
  /** Leave stdin open after the initial bytes (streaming clients); otherwise it is closed. */
  keepStdinOpen?: boolean;
  /** Run on a terminal of this size (ExecSpec.pty). */
  pty?: { cols: number; rows: number };
}

export interface ProcessExit {
  exitCode: number | null;
  signal: string | null;
  /** Why the gateway ended it, when it did ('timeout', 'killed', 'drain'). */
  reason?: string;
  error?: Failure;
}
