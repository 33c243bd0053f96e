// An in-memory Backend for unit tests of the actor tree ONLY (functional tests use real runc).
// Commands: `echo ARGS...` prints, `exit N` exits N, `sleep MS` waits, `cat` echoes stdin.
import { PassThrough } from 'node:stream';
import type { Backend, ExecProcess, ExecSpec, LiveSandbox, SandboxHandle, CreateSpec } from '../../src/backends/types.ts';

export class FakeBackend implements Backend {
  readonly kind = 'jail' as const;
  readonly live = new Map<string, 'running' | 'paused'>();
  readonly calls: string[] = [];
  failCreate: Error | null = null;
  createDelayMs = 0;
  private next = 2;

  async create(spec: CreateSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    this.calls.push(`create ${spec.id}`);
    if (this.createDelayMs) await new Promise((r) => setTimeout(r, this.createDelayMs));
    signal?.throwIfAborted();
    if (this.failCreate) throw this.failCreate;
    this.live.set(spec.id, 'running');
    return { id: spec.id, backend: 'jail', template: spec.template.name, ip: `10.78.0.${this.next++}`, data: {} };
  }
  async destroy(h: SandboxHandle): Promise<void> {
    this.calls.push(`destroy ${h.id}`);
    this.live.delete(h.id);
  }
  async pause(h: SandboxHandle): Promise<void> {
    this.calls.push(`pause ${h.id}`);
    this.live.set(h.id, 'paused');
  }
  async resume(h: SandboxHandle): Promise<void> {
    this.calls.push(`resume ${h.id}`);
    this.live.set(h.id, 'running');
  }
  async listLive(): Promise<LiveSandbox[]> {
    return [...this.live].map(([id, state]) => ({ id, state }));
  }
  async close(): Promise<void> {}
  exec(h: SandboxHandle, spec: ExecSpec): ExecProcess {
    this.calls.push(`exec ${h.id} ${spec.argv.join(' ')}`);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const stdin = new PassThrough();
    let settle!: (v: { exitCode: number | null; signal: string | null }) => void;
    const exited = new Promise<{ exitCode: number | null; signal: string | null }>((r) => (settle = r));
    const end = (exitCode: number | null, signal: string | null = null) => {
      stdout.end();
      stderr.end();
      settle({ exitCode, signal });
    };
    const [cmd, ...args] = spec.argv;
    let timer: NodeJS.Timeout | undefined;
    setImmediate(() => {
      if (cmd === 'echo') {
        stdout.write(args.join(' ') + '\n');
        end(0);
      } else if (cmd === 'exit') end(Number(args[0]));
      else if (cmd === 'sleep') timer = setTimeout(() => end(0), Number(args[0]));
      else if (cmd === 'cat') {
        stdin.on('data', (c) => stdout.write(c));
        stdin.on('end', () => end(0));
      } else {
        stderr.write(`${cmd}: not found\n`);
        end(127);
      }
    });
    return {
      stdout,
      stderr,
      stdin,
      exited,
      kill: (sig) => {
        clearTimeout(timer);
        end(null, sig);
      },
    };
  }
}
