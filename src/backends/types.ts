// The one Backend interface behind which both isolation classes live (DESIGN.md "Backends").
import type { Readable, Writable } from 'node:stream';

/** What a backend logs with (pino's shape; the gateway passes its logger). */
export interface BackendLogger {
  info(o: object, msg?: string): void;
  warn(o: object, msg?: string): void;
}

/** An isolation class's name (jail, bhyve, ...): an open set, one per folder under src/backends. */
export type BackendKind = string;

export interface Template {
  /** Registry name, e.g. `base` or `python-bhyve`. */
  name: string;
  /** `<templates_root>/<name>-template` (jail) or `<bhyve_root>/<name>.img` (bhyve). */
  path: string;
  backend: BackendKind;
}

export interface Limits {
  memoryMiB: number;
  cpus: number;
  pids: number;
  /** Disk quota of the sandbox's writable layer (MiB); absent = the backend's default (`--disk-mib`). */
  diskMiB?: number;
}

export const DEFAULT_LIMITS: Limits = { memoryMiB: 512, cpus: 1, pids: 512 };

export interface CreateSpec {
  /** Sandbox id: lowercase alnum, 10 chars (fits `cpc<id>h` in IFNAMSIZ). */
  id: string;
  template: Template;
  limits: Limits;
  /** Egress beyond the host (E2B's allow_internet_access); off by default. */
  internet?: boolean;
  /** Start with the files of this snapshot (same template). `consume`: the snapshot is used up (fork). */
  fromSnapshot?: { snapshotID: string; consume?: boolean };
}

/** A consistent copy of a sandbox's files (no memory), from which new sandboxes can be made. */
export interface SnapshotRecord {
  snapshotID: string;
  /** The sandbox it was taken from (which may be gone since). */
  sandboxID: string;
  template: string;
  backend: BackendKind;
  createdAt: string;
  sizeBytes: number;
}

/** What a backend returns for a live sandbox; `data` is backend-private (names, paths, vm). */
export interface SandboxHandle {
  id: string;
  backend: BackendKind;
  template: string;
  ip: string;
  data: Record<string, unknown>;
}

export interface ExecSpec {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** User name inside the sandbox; the backend picks a default when absent. */
  user?: string;
  /**
   * Run on a terminal of this size: one output stream (stdout), TERM=xterm-256color unless env sets
   * it. A backend that cannot give one refuses (unsupported, naming `pty`), never runs without it.
   */
  pty?: { cols: number; rows: number };
}

export interface ExecExit {
  /** Exit code, or null when killed by a signal. */
  exitCode: number | null;
  /** Signal name (e.g. `SIGINT`) when the command died of a signal. */
  signal: string | null;
}

/** A running command. Streams are raw bytes; `exited` settles once, after both output streams end. */
export interface ExecProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable;
  readonly exited: Promise<ExecExit>;
  /** Deliver a signal to the command inside the sandbox. */
  kill(signal: NodeJS.Signals): void;
  /**
   * The command's PID as seen inside the sandbox (its own PID namespace), once known; null when the
   * backend cannot tell or the command was gone before it could be read. Optional: absent = unknown.
   */
  pid?(): Promise<number | null>;
  /** Resize the command's terminal (present only on a command started with `pty`). */
  resize?(cols: number, rows: number): void;
}

export interface LiveSandbox {
  id: string;
  /** unknown: residue of a sandbox (e.g. a half-made one) that must be cleaned up, not adopted. */
  state: 'running' | 'paused' | 'unknown';
  /** Backend-private handle data needed to destroy it (bhyve: the vm). */
  data?: Record<string, unknown>;
}

export interface Backend {
  readonly kind: BackendKind;
  /** Create a sandbox; on failure every step already done is rolled back before the promise rejects. */
  create(spec: CreateSpec, signal?: AbortSignal): Promise<SandboxHandle>;
  /** Remove everything the sandbox owns. Idempotent; never throws for "already gone". */
  destroy(handle: SandboxHandle): Promise<void>;
  exec(handle: SandboxHandle, spec: ExecSpec): ExecProcess;
  pause(handle: SandboxHandle): Promise<void>;
  resume(handle: SandboxHandle): Promise<void>;
  /**
   * Optional (absent = the seed's "not supported on <kind> backend v1"): copy the sandbox's files
   * consistently (frozen during the copy; a paused sandbox stays paused).
   */
  snapshot?(handle: SandboxHandle, snapshotID: string): Promise<SnapshotRecord>;
  deleteSnapshot?(snapshotID: string): Promise<void>;
  listSnapshots?(): Promise<SnapshotRecord[]>;
  /** Take back a live sandbox found after a gateway restart (address, connections, bookkeeping). */
  adopt?(handle: SandboxHandle): Promise<void>;
  /** Sandboxes this backend has on the host (for reconciliation and leak checks). */
  listLive(): Promise<LiveSandbox[]>;
  /**
   * Optional: after a drain (every actor gone), remove whatever host objects by this backend's
   * naming scheme are still there (a record or an actor was missing). Returns the ids swept and
   * what could not be removed.
   */
  sweep?(): Promise<{ swept: string[]; left: string[] }>;
  /** Release host-wide resources at gateway stop (not sandboxes; those are destroyed by their actors). */
  close(): Promise<void>;
}
