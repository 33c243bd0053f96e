// Commands in sandboxes: start one (streamed), run one to completion (buffered), a helper command
// for the E2B file API, and the table of running and recently finished commands per sandbox.
import type { Actor, AnyActorRef, AnyStateMachine } from 'xstate';
import type { ProcessOutput, RunnerCommand } from '../../machines/process.ts';
import type { ExecRequest, ProcessExit } from '../../machines/types.ts';
import { CoppiceError, fromErrorInfo, notFound } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import type { ExecResultView } from '../protocol/views.ts';
import type { SandboxDirectory } from './directory.ts';
import { ProcessChannel, type ChannelOptions } from './process-channel.ts';
import type { ProcessEntry, ProcessKind, ProcessTable } from './process-table.ts';
import { newReqId, request } from './request.ts';

export class Processes {
  private seq = 0;

  constructor(
    private readonly root: Actor<AnyStateMachine>,
    private readonly sandboxes: SandboxDirectory,
    readonly table: ProcessTable,
    private readonly metrics: Metrics,
    private readonly captureLimit: number,
  ) {}

  /** Start a command; its bytes and exit arrive on the returned channel. */
  async start(id: string, req: ExecRequest, opts: ChannelOptions & { kind?: ProcessKind } = {}): Promise<ProcessChannel> {
    const { channel, proc } = await this.spawn(id, req, opts);
    this.table.add(id, channel, proc, { kind: opts.kind ?? 'stream', stdinOpen: req.keepStdinOpen ?? false });
    return channel;
  }

  /**
   * A helper command run on a client's behalf (the E2B file API's small shell commands): like
   * start, but not in the process table (never listed, never re-attached). Stdin, EOF and
   * signals go through `send`.
   */
  async startHelper(id: string, req: ExecRequest, opts: ChannelOptions = {}): Promise<{ channel: ProcessChannel; send(cmd: RunnerCommand): void }> {
    const { channel, proc } = await this.spawn(id, req, opts);
    // As in the process table: the actor's output settles a command whose runner never reported.
    const sub = proc?.subscribe({
      complete: () => {
        const out = (proc.getSnapshot() as { output?: ProcessOutput }).output;
        if (out) channel.finish(out.exit);
        queueMicrotask(() => sub?.unsubscribe());
      },
      error: () => undefined,
    });
    return { channel, send: (cmd) => proc?.send(cmd) };
  }

  private async spawn(id: string, req: ExecRequest, opts: ChannelOptions): Promise<{ channel: ProcessChannel; proc: AnyActorRef | undefined }> {
    const ref = this.sandboxes.ref(id);
    const ctx = this.sandboxes.snapshot(id).context;
    const processId = String(++this.seq);
    const channel = new ProcessChannel(processId, req.argv, opts);
    const withEnv: ExecRequest = { ...req, env: { ...ctx.envVars, ...req.env } };
    await request(ref, { type: 'EXEC', reqId: newReqId(), processId, request: withEnv, channel }, 10_000);
    return { channel, proc: this.root.system.get(`process:${id}:${processId}`) as AnyActorRef | undefined };
  }

  /** A command of this sandbox, running or recently finished (404 otherwise). */
  entry(id: string, processId: string): ProcessEntry {
    this.sandboxes.ref(id);
    const e = this.table.get(id, processId);
    if (!e) throw notFound(`process "${processId}" of sandbox "${id}"`);
    return e;
  }

  list(id: string) {
    this.sandboxes.ref(id);
    return this.table.list(id).map((e) => this.table.view(e));
  }

  /** The buffered exec: run to completion and return the captured output. */
  async exec(id: string, req: ExecRequest): Promise<ExecResultView> {
    const started = Date.now();
    const backend = this.sandboxes.snapshot(id).context.backend;
    // Its full output is captured anyway: a small replay buffer is enough for a WebSocket observer.
    const channel = await this.start(id, req, { kind: 'buffered', captureLimit: this.captureLimit, replayLimit: 256 * 1024 });
    const exit: ProcessExit = await channel.exited;
    this.metrics.execSeconds.observe({ backend }, (Date.now() - started) / 1000);
    // It never ran: the request's own fault (an unknown user: 400 naming it) or the backend's (502).
    if (exit.error && exit.exitCode === null && exit.signal === null) {
      if (exit.error.code === 'bad_request') throw fromErrorInfo(exit.error);
      throw new CoppiceError('backend_failed', `exec failed: ${exit.error.message}`);
    }
    return {
      processID: channel.processId,
      exitCode: exit.exitCode,
      signal: exit.signal,
      stdout: channel.output('stdout').toString('utf8'),
      stderr: channel.output('stderr').toString('utf8'),
      truncated: channel.truncated,
      ...(exit.reason ? { reason: exit.reason } : {}),
      durationMs: Date.now() - started,
    };
  }
}
