// A Sandbox: create, list, buffered exec (REST), streaming exec (WebSocket), attach, processes,
// pause/resume, snapshot/fork, timeout, kill. Gateway URL and key come from the options or
// COPPICE_URL / COPPICE_API_KEY.
import type { ExecResultView, ProcessView, SnapshotView } from '../protocol/views.ts';
import type { AttachMessage, StartMessage } from '../protocol/exec-ws.ts';
import { ExecStream, type StreamCallbacks } from './exec-stream.ts';
import { call, resolveConn, type ClientOptions, type Conn } from './http.ts';

export type { ClientOptions };

export interface CreateOptions extends ClientOptions {
  /** Sandbox lifetime in seconds (E2B's `timeout`). */
  timeout?: number;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  limits?: { memoryMiB?: number; cpus?: number; pids?: number };
}

export interface FromSnapshotOptions extends Omit<CreateOptions, 'limits'> {
  limits?: CreateOptions['limits'];
  /** Must match the snapshot's template when given. */
  templateID?: string;
}

export interface ForkOptions {
  /** The fork's lifetime in seconds (default: the gateway's default). */
  timeout?: number;
  /** The fork's metadata (default: the source's). */
  metadata?: Record<string, string>;
}

export interface SandboxInfo {
  sandboxID: string;
  templateID: string;
  backend: string;
  /** starting | running | paused | stopping | killed | failed */
  state: string;
  /** The actor's state in words (ready, exec, paused, draining, ...). */
  lifecycle?: string;
  ip: string | null;
  startedAt: string;
  endAt: string;
  metadata?: Record<string, string>;
  limits?: { memoryMiB: number; cpus: number; pids: number };
  processes?: number;
  [k: string]: unknown;
}

export interface ExecOptions {
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  /** 0 = no deadline. Buffered exec defaults to 60 s (gateway default), streaming to none. */
  timeoutMs?: number;
}

export type ExecResult = ExecResultView;

export interface ExecStreamOptions extends ExecOptions, StreamCallbacks {
  /** Keep stdin open for `write()`/`closeStdin()` (default false). */
  stdin?: boolean;
}

export interface AttachOptions extends StreamCallbacks {
  /** Output offset to resume from (a previous stream's `offset`); default: all the gateway kept. */
  from?: number;
  /** Do not hold the command back if this client is slow; skip ahead instead (reported via onDropped). */
  lossy?: boolean;
}

export type SnapshotResult = SnapshotView;

export type ProcessInfo = ProcessView;

const toCommand = (cmd: string | string[]) => (typeof cmd === 'string' ? { cmd } : { argv: cmd });
/** Long operations (create, fork, snapshot copy) get a longer default deadline than plain calls. */
const LONG_MS = 10 * 60_000;

export class Sandbox {
  private constructor(
    private readonly conn: Conn,
    /** What the gateway said about the sandbox when this handle was made (see getInfo()). */
    readonly info: SandboxInfo,
  ) {}

  get sandboxID(): string {
    return this.info.sandboxID;
  }

  get templateID(): string {
    return this.info.templateID;
  }

  get backend(): string {
    return this.info.backend;
  }

  static async create(templateID: string, opts: CreateOptions = {}): Promise<Sandbox> {
    const conn = resolveConn(opts);
    const info = await call<SandboxInfo>(
      conn,
      'POST',
      '/sandboxes',
      { templateID, ...createFields(opts) },
      Math.max(conn.timeoutMs, LONG_MS),
    );
    return new Sandbox(conn, info);
  }

  /** A new sandbox with a snapshot's files (its template unless `templateID` is given). */
  static async createFromSnapshot(snapshotID: string, opts: FromSnapshotOptions = {}): Promise<Sandbox> {
    const conn = resolveConn(opts);
    const info = await call<SandboxInfo>(
      conn,
      'POST',
      '/sandboxes',
      { snapshotID, ...(opts.templateID ? { templateID: opts.templateID } : {}), ...createFields(opts) },
      Math.max(conn.timeoutMs, LONG_MS),
    );
    return new Sandbox(conn, info);
  }

  /** A handle on an existing sandbox (checks that it exists). */
  static async connect(sandboxID: string, opts: ClientOptions = {}): Promise<Sandbox> {
    const conn = resolveConn(opts);
    const info = await call<SandboxInfo>(conn, 'GET', `/sandboxes/${encodeURIComponent(sandboxID)}`);
    return new Sandbox(conn, info);
  }

  /** Every live sandbox on the gateway. */
  static async list(opts: ClientOptions = {}): Promise<SandboxInfo[]> {
    return call<SandboxInfo[]>(resolveConn(opts), 'GET', '/sandboxes');
  }

  private path(suffix = ''): string {
    return `/sandboxes/${encodeURIComponent(this.sandboxID)}${suffix}`;
  }

  /** Run to completion and return the captured output (REST /exec; UTF-8 text, capped by the gateway). */
  exec(cmd: string | string[], opts: ExecOptions & { stdin?: string } = {}): Promise<ExecResult> {
    const deadline = opts.timeoutMs === 0 ? 24 * 3600_000 : (opts.timeoutMs ?? 60_000) + 30_000;
    return call<ExecResult>(this.conn, 'POST', this.path('/exec'), { ...toCommand(cmd), ...opts }, Math.max(this.conn.timeoutMs, deadline));
  }

  /** Start a command and stream its output (callbacks, or `for await (const c of stream)`). */
  execStream(cmd: string | string[], opts: ExecStreamOptions = {}): ExecStream {
    const { onStdout, onStderr, onDropped, onError, ...rest } = opts;
    const start: StartMessage = { type: 'start', ...toCommand(cmd), ...rest };
    return new ExecStream(this.wsUrl(), this.conn.apiKey, start, { onStdout, onStderr, onDropped, onError });
  }

  /** Re-attach to a running or recently finished command. */
  attach(processID: string, opts: AttachOptions = {}): ExecStream {
    const { onStdout, onStderr, onDropped, onError, ...rest } = opts;
    const msg: AttachMessage = { type: 'attach', processID, ...rest };
    return new ExecStream(this.wsUrl(), this.conn.apiKey, msg, { onStdout, onStderr, onDropped, onError });
  }

  processes(): Promise<ProcessInfo[]> {
    return call<ProcessInfo[]>(this.conn, 'GET', this.path('/processes'));
  }

  async getInfo(): Promise<SandboxInfo> {
    return call<SandboxInfo>(this.conn, 'GET', this.path());
  }

  async pause(): Promise<void> {
    await call(this.conn, 'POST', this.path('/pause'));
  }

  async resume(): Promise<void> {
    await call(this.conn, 'POST', this.path('/resume'));
  }

  /** Set the sandbox to end `seconds` from now (may shorten; E2B's setTimeout). */
  async setTimeout(seconds: number): Promise<void> {
    await call(this.conn, 'POST', this.path('/timeout'), { timeout: seconds });
  }

  /** The sandbox's files as of now (it is frozen during the copy). 501 on bhyve v1. */
  snapshot(): Promise<SnapshotResult> {
    return call<SnapshotResult>(this.conn, 'POST', this.path('/snapshot'), undefined, Math.max(this.conn.timeoutMs, LONG_MS));
  }

  /** A new, independent sandbox with this one's files as of now. 501 on bhyve v1. */
  async fork(opts: ForkOptions = {}): Promise<Sandbox> {
    const info = await call<SandboxInfo>(this.conn, 'POST', this.path('/fork'), opts, Math.max(this.conn.timeoutMs, LONG_MS));
    return new Sandbox(this.conn, info);
  }

  /** Destroy the sandbox (idempotent: a sandbox already gone is not an error). */
  async kill(): Promise<void> {
    try {
      await call(this.conn, 'DELETE', this.path());
    } catch (err) {
      if ((err as { status?: number }).status !== 404) throw err;
    }
  }

  private wsUrl(): string {
    return this.conn.url.replace(/^http/, 'ws') + this.path('/exec/ws');
  }
}

/** The optional create fields both create forms send (only those given). */
function createFields(opts: { timeout?: number; metadata?: unknown; envVars?: unknown; limits?: unknown }): Record<string, unknown> {
  return {
    ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}),
    ...(opts.metadata ? { metadata: opts.metadata } : {}),
    ...(opts.envVars ? { envVars: opts.envVars } : {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
  };
}
