// A Sandbox: create, list, buffered exec (REST), streaming exec (WebSocket), attach, processes,
// `commands` and `files` (E2B's shape), pause/resume, snapshot/fork, timeout, kill. Gateway URL
// and key come from the options or COPPICE_URL / COPPICE_API_KEY.
//
// Units: every duration the SDK takes or gives is in milliseconds and named `...Ms` (E2B's JS SDK
// does the same). The gateway keeps lifetimes in whole seconds: a lifetime in ms is rounded up to
// the next second on the way.
import type { ExecResultView, ProcessView, SandboxView, SnapshotView } from '../protocol/views.ts';
import type { AttachMessage, StartMessage } from '../protocol/exec-ws.ts';
import { Commands } from './commands.ts';
import { InvalidArgumentError } from './errors.ts';
import { ExecStream, type StreamCallbacks } from './exec-stream.ts';
import { Files } from './files.ts';
import { call, resolveConn, type ClientOptions, type Conn } from './http.ts';

export type { ClientOptions };

export interface CreateOptions extends ClientOptions {
  /** Sandbox lifetime in ms from now (E2B's `timeoutMs`; default: the gateway's, 300 000). */
  timeoutMs?: number;
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
  /** The fork's lifetime in ms (default: the gateway's default). */
  timeoutMs?: number;
  /** The fork's metadata (default: the source's). */
  metadata?: Record<string, string>;
}

/** What the gateway says about a sandbox: the same shape from create, fork, connect, get and list. */
export type SandboxInfo = SandboxView;

const INFO_KEYS = [
  'sandboxID', 'templateID', 'backend', 'state', 'lifecycle', 'ip', 'startedAt', 'endAt',
  'metadata', 'limits', 'cpuCount', 'memoryMB', 'processes', 'allowInternetAccess',
] as const satisfies readonly (keyof SandboxView)[];

/**
 * coppice's own fields of a sandbox reply. Some routes also carry E2B's (envdAccessToken, clientID,
 * envdVersion: for E2B's SDK), some do not; keeping these makes every reply one shape.
 */
export function sandboxInfo(raw: SandboxView): SandboxInfo {
  const out: Record<string, unknown> = {};
  for (const k of INFO_KEYS) if (k in raw) out[k] = raw[k];
  return out as unknown as SandboxInfo;
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

export interface ConnectOptions extends ClientOptions {
  /** The lifetime from now, in ms (default: the gateway's, 300 000). */
  timeoutMs?: number;
}

const toCommand = (cmd: string | string[]) => (typeof cmd === 'string' ? { cmd } : { argv: cmd });
/** Long operations (create, fork, snapshot copy) get a longer default deadline than plain calls. */
const LONG_MS = 10 * 60_000;

export class Sandbox {
  /** What the gateway said about the sandbox when this handle was made (see getInfo()). */
  readonly info: SandboxInfo;
  /** Commands in the sandbox, E2B-style: `run`, `run(..., { background: true })`, `list`, `connect`. */
  readonly commands: Commands;
  /** Files in the sandbox, E2B-style: `read`, `write`, `list`, `getInfo`, `exists`, `remove`, `makeDir`. */
  readonly files: Files;

  private constructor(
    private readonly conn: Conn,
    info: SandboxInfo,
  ) {
    this.info = sandboxInfo(info);
    this.commands = new Commands(this);
    this.files = new Files(conn, info.sandboxID);
  }

  get sandboxID(): string {
    return this.info.sandboxID;
  }

  get templateID(): string {
    return this.info.templateID;
  }

  /**
   * The host name of a port inside the sandbox, as E2B's getHost: `<port>-<sandboxID>.<domain>`
   * (the gateway's --domain, given as `domain` or COPPICE_DOMAIN). Requests to that name on the
   * gateway's address reach the port (a browser resolves `*.localhost` by itself).
   */
  getHost(port: number): string {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(400, 'bad_request', `port: ${port} is not a TCP port`, 'port');
    if (!this.conn.domain) {
      throw new InvalidArgumentError(400, 'bad_request', 'domain: getHost needs the gateway\'s --domain (pass domain or set COPPICE_DOMAIN)', 'domain');
    }
    return `${port}-${this.sandboxID}.${this.conn.domain}`;
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

  /** A handle on an existing sandbox as it is (checks that it exists; changes nothing). */
  static async get(sandboxID: string, opts: ClientOptions = {}): Promise<Sandbox> {
    const conn = resolveConn(opts);
    const info = await call<SandboxInfo>(conn, 'GET', `/sandboxes/${encodeURIComponent(sandboxID)}`);
    return new Sandbox(conn, info);
  }

  /**
   * E2B's connect: a handle on the sandbox, resumed if it was paused, living `timeoutMs` from now
   * (default: the gateway's 300 000).
   */
  static async connect(sandboxID: string, opts: ConnectOptions = {}): Promise<Sandbox> {
    const conn = resolveConn(opts);
    const body = opts.timeoutMs === undefined ? {} : { timeout: seconds('timeoutMs', opts.timeoutMs, 0) };
    const info = await call<SandboxInfo>(conn, 'POST', `/sandboxes/${encodeURIComponent(sandboxID)}/connect`, body);
    return new Sandbox(conn, info);
  }

  /** Every live sandbox on the gateway. */
  static async list(opts: ClientOptions = {}): Promise<SandboxInfo[]> {
    return (await call<SandboxInfo[]>(resolveConn(opts), 'GET', '/sandboxes')).map(sandboxInfo);
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
    return sandboxInfo(await call<SandboxInfo>(this.conn, 'GET', this.path()));
  }

  async pause(): Promise<void> {
    await call(this.conn, 'POST', this.path('/pause'));
  }

  async resume(): Promise<void> {
    await call(this.conn, 'POST', this.path('/resume'));
  }

  /** Set the sandbox to end `timeoutMs` from now (may shorten; E2B's setTimeout). */
  async setTimeout(timeoutMs: number): Promise<void> {
    await call(this.conn, 'POST', this.path('/timeout'), { timeout: seconds('timeoutMs', timeoutMs, 0) });
  }

  /** The sandbox's files as of now (it is frozen during the copy). 501 on bhyve v1. */
  snapshot(): Promise<SnapshotResult> {
    return call<SnapshotResult>(this.conn, 'POST', this.path('/snapshot'), undefined, Math.max(this.conn.timeoutMs, LONG_MS));
  }

  /** A new, independent sandbox with this one's files as of now. 501 on bhyve v1. */
  async fork(opts: ForkOptions = {}): Promise<Sandbox> {
    const body = {
      ...(opts.timeoutMs !== undefined ? { timeout: seconds('timeoutMs', opts.timeoutMs, 1) } : {}),
      ...(opts.metadata ? { metadata: opts.metadata } : {}),
    };
    const info = await call<SandboxInfo>(this.conn, 'POST', this.path('/fork'), body, Math.max(this.conn.timeoutMs, LONG_MS));
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

/** A lifetime in ms as the gateway's whole seconds (rounded up), refused here when it is not one. */
function seconds(field: string, ms: number, min: number): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < min * 1000) {
    throw new InvalidArgumentError(400, 'bad_request', `${field}: must be a number of milliseconds >= ${min * 1000}`, field);
  }
  return Math.ceil(ms / 1000);
}

/** The optional create fields both create forms send (only those given). */
function createFields(opts: { timeoutMs?: number; metadata?: unknown; envVars?: unknown; limits?: unknown }): Record<string, unknown> {
  return {
    ...(opts.timeoutMs !== undefined ? { timeout: seconds('timeoutMs', opts.timeoutMs, 1) } : {}),
    ...(opts.metadata ? { metadata: opts.metadata } : {}),
    ...(opts.envVars ? { envVars: opts.envVars } : {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
  };
}
