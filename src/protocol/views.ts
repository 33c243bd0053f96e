// The JSON shapes the gateway answers with, shared by the edge (which sends them), the SDK and
// the CLI (which read them). Types only: importing this file costs nothing at run time.

/** A sandbox's state as the API words it (the actor's own state is in `lifecycle`). */
export type PublicState = 'starting' | 'running' | 'paused' | 'stopping' | 'killed' | 'failed';

export interface LimitsView {
  memoryMiB: number;
  cpus: number;
  pids: number;
}

export interface TemplateView {
  name: string;
  path: string;
  /** The isolation class that serves it (see GET /templates). */
  backend: string;
  /** What that backend can do: file snapshots (and forks), and who keeps its warm pool. */
  capabilities?: { snapshots: boolean; pool: 'external' | 'slots' };
}

export interface ReloadView {
  templates: TemplateView[];
  warnings: string[];
}

export interface SandboxView {
  sandboxID: string;
  templateID: string;
  backend: string;
  state: PublicState;
  lifecycle: string;
  ip: string | null;
  startedAt: string;
  endAt: string;
  metadata: Record<string, string>;
  limits: LimitsView;
  cpuCount: number;
  memoryMB: number;
  processes: number;
  allowInternetAccess: boolean;
}

export interface PoolView {
  template: string;
  backend: string;
  /** idle | warming | emptying | draining | drained */
  state: string;
  available: number;
  inUse: number;
  /** Slots asked for by the warm in progress (null when none). */
  warming: number | null;
  progress: string | null;
  refreshedAt: string | null;
  error: string | null;
  /** External pools that say how their guests run (the microVM pool-ctl: kvm | tcg). */
  accel?: string;
}

export interface PoolStatsView {
  template: string;
  available: number;
  inUse: number;
}

export interface ExecResultView {
  processID: string;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  truncated: boolean;
  reason?: string;
  durationMs: number;
}

export interface ProcessExitView {
  exitCode: number | null;
  signal: string | null;
  reason?: string;
  error?: { code: string; message: string; field?: string };
}

export type ProcessKind = 'stream' | 'buffered';

export interface ProcessView {
  processID: string;
  kind: ProcessKind;
  argv: string[];
  state: 'running' | 'exited';
  startedAt: string;
  endedAt: string | null;
  exit: ProcessExitView | null;
  /** Output bytes produced so far (the offset a fully caught-up client has reached). */
  outputBytes: number;
  /** Oldest output offset still kept for re-attach. */
  retainedFrom: number;
  clients: number;
  stdinOpen: boolean;
}

export interface SnapshotView {
  snapshotID: string;
  sandboxID: string;
  template: string;
  backend: string;
  createdAt: string;
  sizeBytes: number;
}

export interface HealthView {
  status: 'starting' | 'serving' | 'draining' | 'stopped' | string;
}
