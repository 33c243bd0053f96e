// The gateway's control plane as a client: templates, pools, snapshots, the sandbox list, health
// and the devtools tree. Sandboxes themselves are `Sandbox` objects (./sandbox.ts).
import { ConnectionError, errorFromBody } from './errors.ts';
import { call, callNdjson, resolveConn, send, type ClientOptions, type Conn } from './http.ts';
import { Sandbox, sandboxInfo, type CreateOptions, type SandboxInfo } from './sandbox.ts';
import type { HealthView, PoolStatsView, PoolView, ReloadView, SnapshotView, TemplateView } from '../protocol/views.ts';

export type TemplateInfo = TemplateView;

export type ReloadResult = ReloadView;

export type PoolInfo = PoolView;

export type PoolStats = PoolStatsView;

export interface WarmOptions {
  /** Each progress line of the warm as it comes (the NDJSON stream of POST /pool/:name/warm). */
  onProgress?: (line: string) => void;
  /** Deadline for the whole warm in ms (default 30 min). */
  timeoutMs?: number;
}

export type SnapshotInfo = SnapshotView;

export type Health = HealthView;

const seg = encodeURIComponent;

export class CoppiceClient {
  readonly conn: Conn;

  constructor(opts: ClientOptions = {}) {
    this.conn = resolveConn(opts);
  }

  get url(): string {
    return this.conn.url;
  }

  // ---- templates ----

  templates(): Promise<TemplateInfo[]> {
    return call<TemplateInfo[]>(this.conn, 'GET', '/templates');
  }

  /** Rescan the template roots (running sandboxes are untouched). */
  reloadTemplates(): Promise<ReloadResult> {
    return call<ReloadResult>(this.conn, 'POST', '/templates/reload');
  }

  // ---- sandboxes ----

  async listSandboxes(): Promise<SandboxInfo[]> {
    return (await call<SandboxInfo[]>(this.conn, 'GET', '/sandboxes')).map(sandboxInfo);
  }

  async getSandbox(sandboxID: string): Promise<SandboxInfo> {
    return sandboxInfo(await call<SandboxInfo>(this.conn, 'GET', `/sandboxes/${seg(sandboxID)}`));
  }

  createSandbox(templateID: string, opts: Omit<CreateOptions, keyof ClientOptions> = {}): Promise<Sandbox> {
    return Sandbox.create(templateID, { ...opts, url: this.conn.url, apiKey: this.conn.apiKey, requestTimeoutMs: this.conn.timeoutMs });
  }

  /** A handle on an existing sandbox (checks that it exists). */
  sandbox(sandboxID: string): Promise<Sandbox> {
    return Sandbox.get(sandboxID, { url: this.conn.url, apiKey: this.conn.apiKey, requestTimeoutMs: this.conn.timeoutMs });
  }

  // ---- pools ----

  pools(): Promise<PoolInfo[]> {
    return call<PoolInfo[]>(this.conn, 'GET', '/pool');
  }

  /**
   * Warm a pool to `count` ready slots. With `onProgress`, the gateway streams progress (NDJSON);
   * an error that happens after the stream started arrives in it and is thrown here, typed.
   */
  async warmPool(template: string, count: number, opts: WarmOptions = {}): Promise<PoolStats> {
    const path = `/pool/${seg(template)}/warm`;
    const timeoutMs = opts.timeoutMs ?? 30 * 60_000;
    if (!opts.onProgress) return call<PoolStats>(this.conn, 'POST', path, { count }, timeoutMs);
    let done: PoolStats | undefined;
    await callNdjson(
      this.conn,
      'POST',
      path,
      { count },
      (line) => {
        const l = line as { progress?: string; done?: PoolStats; error?: { code?: number } };
        if (typeof l.progress === 'string') opts.onProgress!(l.progress);
        else if (l.done) done = l.done;
        else if (l.error) throw errorFromBody(l.error.code ?? 500, l.error);
      },
      timeoutMs,
    );
    if (!done) throw new ConnectionError(`warm ${template}: the progress stream ended without a result`);
    return done;
  }

  /** The operator's drain: destroy the pool's idle slots (the pool stays usable). */
  drainPool(template: string): Promise<PoolStats> {
    return call<PoolStats>(this.conn, 'POST', `/pool/${seg(template)}/drain`, undefined, 5 * 60_000);
  }

  // ---- snapshots ----

  snapshots(): Promise<SnapshotInfo[]> {
    return call<SnapshotInfo[]>(this.conn, 'GET', '/snapshots');
  }

  async deleteSnapshot(snapshotID: string): Promise<void> {
    await call(this.conn, 'DELETE', `/snapshots/${seg(snapshotID)}`);
  }

  // ---- system ----

  /** GET /health (open): the lifecycle; 503 while starting or draining is an answer, not an error. */
  async health(): Promise<Health> {
    const res = await send(this.conn, 'GET', '/health', undefined);
    const body = (await res.json().catch(() => ({}))) as Partial<Health>;
    return { status: body.status ?? `http_${res.status}` };
  }

  /** The live actor tree (devtools). */
  devtoolsTree(opts: { sandbox?: string; compact?: boolean } = {}): Promise<unknown> {
    const q = new URLSearchParams();
    if (opts.sandbox) q.set('sandbox', opts.sandbox);
    if (opts.compact) q.set('compact', '1');
    const qs = q.toString();
    return call(this.conn, 'GET', `/devtools/tree${qs ? `?${qs}` : ''}`);
  }
}
