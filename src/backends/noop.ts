// A Backend with no substrate at all. It exists ONLY to measure the gateway itself (actor tree,
// edge, request/reply plumbing) in bench/: it is never a default, never selectable by a flag, and
// never used by the functional tests (those run real runc; unit tests of the actor tree use
// test/helpers/fake-backend.ts). Every operation completes at once and does nothing: create hands
// out a handle with a made-up address, exec exits 0 with no output.
import { PassThrough } from 'node:stream';
import type { Backend, BackendKind, CreateSpec, ExecExit, ExecProcess, ExecSpec, LiveSandbox, SandboxHandle } from './types.ts';

export interface NoopBackendOptions {
  /** Which isolation class to pretend to be (the gateway routes templates by kind). Default `jail`. */
  kind?: BackendKind;
}

const OK: ExecExit = { exitCode: 0, signal: null };

export class NoopBackend implements Backend {
  readonly kind: BackendKind;
  /** Live ids, so listLive() answers truthfully. */
  private readonly live = new Map<string, 'running' | 'paused'>();
  private seq = 0;

  constructor(opts: NoopBackendOptions = {}) {
    this.kind = opts.kind ?? 'jail';
  }

  async create(spec: CreateSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    signal?.throwIfAborted();
    this.live.set(spec.id, 'running');
    const n = this.seq++;
    return {
      id: spec.id,
      backend: this.kind,
      template: spec.template.name,
      ip: `198.18.${(n >> 8) & 255}.${n & 255}`, // RFC 2544 benchmarking range: never routed here
      data: {},
    };
  }

  async destroy(handle: SandboxHandle): Promise<void> {
    this.live.delete(handle.id);
  }

  exec(_handle: SandboxHandle, _spec: ExecSpec): ExecProcess {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const stdin = new PassThrough();
    stdout.end();
    stderr.end();
    return { stdout, stderr, stdin, exited: Promise.resolve(OK), kill: () => undefined };
  }

  async pause(handle: SandboxHandle): Promise<void> {
    if (this.live.has(handle.id)) this.live.set(handle.id, 'paused');
  }

  async resume(handle: SandboxHandle): Promise<void> {
    if (this.live.has(handle.id)) this.live.set(handle.id, 'running');
  }

  async listLive(): Promise<LiveSandbox[]> {
    return [...this.live].map(([id, state]) => ({ id, state }));
  }

  async close(): Promise<void> {
    this.live.clear();
  }
}

export function createNoopBackend(opts: NoopBackendOptions = {}): NoopBackend {
  return new NoopBackend(opts);
}
