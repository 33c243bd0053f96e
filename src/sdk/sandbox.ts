// The TypeScript client: a Sandbox with create, buffered exec (REST), streaming exec (WebSocket),
// attach, processes and kill. Gateway URL and key come from the options or COPPICE_URL /
// COPPICE_API_KEY.
import type { ProcessView } from '../actors/process-table.ts';
import type { AttachMessage, StartMessage } from '../edge/ws/protocol.ts';
import { AuthenticationError, ConnectionError, errorFromBody } from './errors.ts';
import { ExecStream, type StreamCallbacks } from './exec-stream.ts';

export interface ClientOptions {
  /** Gateway base URL, e.g. http://127.0.0.1:3000 (default: COPPICE_URL, else http://127.0.0.1:3000). */
  url?: string;
  /** API key (default: COPPICE_API_KEY). */
  apiKey?: string;
  /** Per-request deadline for REST calls in ms (default 120 s). */
  requestTimeoutMs?: number;
}

export interface CreateOptions extends ClientOptions {
  /** Sandbox lifetime in seconds (E2B's `timeout`). */
  timeout?: number;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  limits?: { memoryMiB?: number; cpus?: number; pids?: number };
}

export interface SandboxInfo {
  sandboxID: string;
  templateID: string;
  backend: string;
  state: string;
  ip: string | null;
  startedAt: string;
  endAt: string;
  [k: string]: unknown;
}

export interface ExecOptions {
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  /** 0 = no deadline. Buffered exec defaults to 60 s (gateway default), streaming to none. */
  timeoutMs?: number;
}

export interface ExecResult {
  processID: string;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  truncated: boolean;
  reason?: string;
  durationMs: number;
}

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

export type ProcessInfo = ProcessView;

interface Conn {
  url: string;
  apiKey: string;
  timeoutMs: number;
}

function resolve(opts: ClientOptions = {}): Conn {
  const url = (opts.url ?? process.env.COPPICE_URL ?? 'http://127.0.0.1:3000').replace(/\/+$/, '');
  const apiKey = opts.apiKey ?? process.env.COPPICE_API_KEY;
  if (!apiKey) throw new AuthenticationError(401, 'unauthorized', 'no API key: pass apiKey or set COPPICE_API_KEY');
  return { url, apiKey, timeoutMs: opts.requestTimeoutMs ?? 120_000 };
}

async function call<T>(conn: Conn, method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(conn.url + path, {
      method,
      headers: { authorization: `Bearer ${conn.apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(conn.timeoutMs),
    });
  } catch (err) {
    throw new ConnectionError(`${method} ${conn.url}${path}: ${(err as Error).message}`, { cause: err });
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = { message: text };
  }
  if (!res.ok) throw errorFromBody(res.status, parsed);
  return parsed as T;
}

const toCommand = (cmd: string | string[]) => (typeof cmd === 'string' ? { cmd } : { argv: cmd });

export class Sandbox {
  private constructor(
    private readonly conn: Conn,
    readonly info: SandboxInfo,
  ) {}

  get sandboxID(): string {
    return this.info.sandboxID;
  }

  static async create(templateID: string, opts: CreateOptions = {}): Promise<Sandbox> {
    const conn = resolve(opts);
    const info = await call<SandboxInfo>(conn, 'POST', '/sandboxes', {
      templateID,
      ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}),
      ...(opts.metadata ? { metadata: opts.metadata } : {}),
      ...(opts.envVars ? { envVars: opts.envVars } : {}),
      ...(opts.limits ? { limits: opts.limits } : {}),
    });
    return new Sandbox(conn, info);
  }

  /** A handle on an existing sandbox (checks that it exists). */
  static async connect(sandboxID: string, opts: ClientOptions = {}): Promise<Sandbox> {
    const conn = resolve(opts);
    const info = await call<SandboxInfo>(conn, 'GET', `/sandboxes/${encodeURIComponent(sandboxID)}`);
    return new Sandbox(conn, info);
  }

  private path(suffix = ''): string {
    return `/sandboxes/${encodeURIComponent(this.sandboxID)}${suffix}`;
  }

  /** Run to completion and return the captured output (REST /exec; UTF-8 text, capped by the gateway). */
  exec(cmd: string | string[], opts: ExecOptions & { stdin?: string } = {}): Promise<ExecResult> {
    return call<ExecResult>(this.conn, 'POST', this.path('/exec'), { ...toCommand(cmd), ...opts });
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
