// envd's process.Process over coppice's process table. Commands are the gateway's ordinary
// streaming processes (so `GET /sandboxes/:id/processes` and the WebSocket attach see them too);
// the SDK addresses them by their real in-sandbox PID, which the backend reports
// (ExecProcess.pid: runc's pid file + NSpid on jail, `$$` over SSH on bhyve).
//
// Semantics, as the SDK expects them:
// - Start: `start {pid}` first, then output, then `end`. Connect-Timeout-Ms is the command's
//   lifetime (killed at the deadline, the stream ends with deadline_exceeded and no end event);
//   a sandbox stopped under a running command ends its stream with unavailable.
// - A client that goes away only detaches: the command keeps running; Connect re-attaches by PID
//   (new output from then on; a command that already ended answers start + end).
// - envs = the sandbox's envVars + the call's envs; default user = the template's (`user`).
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import type { Gateway } from '../actors/gateway.ts';
import type { ProcessChannel } from '../actors/process-channel.ts';
import type { ProcessEntry } from '../actors/process-table.ts';
import type { ProcessExit } from '../actors/types.ts';
import { fromErrorInfo } from '../errors.ts';
import { asConnectError } from './rpc-errors.ts';
import { ChannelStream, type ChannelItem } from './channel-stream.ts';
import { envdCall } from './context.ts';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { ConnectResponseSchema, Process, ProcessEventSchema, Signal, StartResponseSchema, type ProcessConfig, type ProcessSelector } from './gen/process/process_pb.ts';

/** What the SDK started a command with (List shows it back), per channel. */
interface Started {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
  tag?: string;
}

const started = new WeakMap<ProcessChannel, Started>();
/** Commands started on a terminal: their output is the `pty` data case, and Update resizes them. */
const onTerminal = new WeakSet<ProcessChannel>();

/** A PTY size from Start or Update, checked as the WebSocket exec checks it (1..1000 each). */
function ptySize(pty: { size?: { cols: number; rows: number } } | undefined): { cols: number; rows: number } {
  const size = pty?.size;
  if (!size) throw new ConnectError('pty.size is required', Code.InvalidArgument);
  for (const k of ['cols', 'rows'] as const) {
    if (size[k] < 1 || size[k] > 1000) throw new ConnectError(`pty.size.${k}: must be 1..1000`, Code.InvalidArgument);
  }
  return { cols: size.cols, rows: size.rows };
}

/**
 * The PID the SDK knows a command by: its real in-sandbox PID, or — when the backend cannot tell,
 * or the command was over before its PID could be read — a placeholder above any real PID
 * (Linux's pid_max is at most 2^22), unique per command, so it is still addressable.
 */
export const PLACEHOLDER_PID_BASE = 1_000_000_000;
async function pidOf(channel: ProcessChannel): Promise<number> {
  return (await channel.pid()) ?? PLACEHOLDER_PID_BASE + (Number(channel.processId) % 1_000_000_000);
}
const STDIN_HIGH_WATER = 1024 * 1024;

/** Go's ProcessState wording (envd reports it verbatim), for the signals a command usually dies of. */
const SIGNAL_WORDS: Record<string, string> = {
  SIGKILL: 'killed',
  SIGTERM: 'terminated',
  SIGINT: 'interrupt',
  SIGHUP: 'hangup',
  SIGQUIT: 'quit',
  SIGABRT: 'aborted',
  SIGSEGV: 'segmentation fault',
  SIGPIPE: 'broken pipe',
  SIGUSR1: 'user defined signal 1',
  SIGUSR2: 'user defined signal 2',
};

export function endEvent(exit: ProcessExit): { exitCode: number; exited: boolean; status: string; error?: string } {
  if (exit.exitCode !== null) {
    const status = `exit status ${exit.exitCode}`;
    return { exitCode: exit.exitCode, exited: true, status, ...(exit.exitCode !== 0 ? { error: status } : {}) };
  }
  if (exit.signal) {
    const status = `signal: ${SIGNAL_WORDS[exit.signal] ?? exit.signal.toLowerCase()}`;
    return { exitCode: -1, exited: false, status, error: exit.reason === 'timeout' ? `${status} (deadline exceeded)` : status };
  }
  const why = exit.error?.message ?? (exit.reason ? `process ${exit.reason}` : 'process ended without an exit status');
  return { exitCode: -1, exited: false, status: 'error', error: why };
}

/** The bash the SDK always asks for, or /bin/sh where the template has none (busybox). Same PID: exec. */
export function argvFor(cmd: string, args: string[]): string[] {
  if (cmd !== '/bin/bash') return [cmd, ...args];
  return ['/bin/sh', '-c', 'if [ -x /bin/bash ]; then exec /bin/bash "$@"; fi; exec /bin/sh "$@"', 'sh', ...args];
}

/**
 * How E2B's envd ends a stream whose command did not finish on its own: a command killed at its
 * deadline ends the stream with deadline_exceeded (no end event: the SDKs raise their timeout
 * error; Python's raised "Command ended without an end event" on a bare end frame), and one whose
 * sandbox went away under it with unavailable (the SDKs' "sandbox not running" timeout error,
 * not CommandExitError "signal: killed").
 */
export function streamEndError(exit: ProcessExit): ConnectError | null {
  if (exit.reason === 'timeout') return new ConnectError('the command reached its deadline (timeoutMs) and was killed', Code.DeadlineExceeded);
  if (exit.reason === 'killed') return new ConnectError('the sandbox was stopped while the command was running', Code.Unavailable);
  return null;
}

/** Connect's own deadline fired (Connect-Timeout-Ms): end with its error, never a bare end frame. */
function throwIfDeadline(ctx: HandlerContext, message: string): void {
  const r: unknown = ctx.signal.reason;
  if (ctx.signal.aborted && r instanceof ConnectError && r.code === Code.DeadlineExceeded) throw new ConnectError(message, Code.DeadlineExceeded);
}

/**
 * Stream a command's events as envd does (see streamEndError). `deadline`: what the call's own
 * deadline means (Start: the command's lifetime, it is killed; Connect: only the attach ends).
 */
async function* events(stream: ChannelStream, ctx: HandlerContext, deadline: string, pty: boolean): AsyncGenerator<MessageInitShape<typeof ProcessEventSchema>> {
  for await (const item of stream.items(ctx.signal, keepaliveMs(ctx))) {
    if (item.kind === 'end') {
      const err = streamEndError(item.exit);
      if (err) throw err;
    }
    yield toProcessEvent(item, pty);
  }
  throwIfDeadline(ctx, deadline);
}

function keepaliveMs(ctx: HandlerContext): number {
  const s = Number(ctx.requestHeader.get('keepalive-ping-interval'));
  return Number.isFinite(s) && s > 0 ? Math.min(Math.max(s, 1), 300) * 1000 : 50_000;
}

function toProcessEvent(item: ChannelItem, pty: boolean): MessageInitShape<typeof ProcessEventSchema> {
  switch (item.kind) {
    case 'data':
      // a terminal has one stream, which envd sends as `pty`
      return { event: { case: 'data' as const, value: { output: { case: pty ? 'pty' : item.stream, value: item.bytes } } } };
    case 'keepalive':
      return { event: { case: 'keepalive' as const, value: {} } };
    case 'end':
      return { event: { case: 'end' as const, value: endEvent(item.exit) } };
  }
}

export function processService(gw: Gateway): Partial<ServiceImpl<typeof Process>> {
  /** Running (preferred) or finished commands of the sandbox with this PID or tag. */
  const find = async (sandboxId: string, sel: ProcessSelector | undefined, running: boolean): Promise<ProcessEntry> => {
    const s = sel?.selector;
    if (!s || s.case === undefined) throw new ConnectError('process selector (pid or tag) is required', Code.InvalidArgument);
    const entries = gw.processes.list(sandboxId);
    const matches: ProcessEntry[] = [];
    for (const e of entries) {
      if (running && e.channel.exit) continue;
      const ok = s.case === 'pid' ? (await pidOf(e.channel)) === s.value : started.get(e.channel)?.tag === s.value;
      if (ok) matches.push(e);
    }
    // A PID can come round again: the live one wins, then the most recent.
    matches.sort((a, b) => Number(a.channel.exit !== null) - Number(b.channel.exit !== null) || b.channel.startedAt - a.channel.startedAt);
    const hit = matches[0];
    if (!hit) throw new ConnectError(`process with ${s.case} ${s.value} not found`, Code.NotFound);
    return hit;
  };

  return {
    async *start(req, ctx) {
      const call = envdCall(ctx);
      const pty = req.pty ? ptySize(req.pty) : undefined;
      const cfg: ProcessConfig | undefined = req.process;
      if (!cfg?.cmd) throw new ConnectError('process.cmd is required', Code.InvalidArgument);
      if (cfg.cwd?.includes('\0')) throw new ConnectError('process.cwd contains a NUL byte', Code.InvalidArgument);
      // A relative cwd is relative to the user's home (E2B), where every command starts: a `cd`
      // in front of the command (exec: same PID) rather than an absolute path the gateway guesses.
      const relativeCwd = cfg.cwd && !cfg.cwd.startsWith('/') ? cfg.cwd : undefined;
      const argv = argvFor(cfg.cmd, cfg.args);
      const deadline = ctx.timeoutMs();
      let channel: ProcessChannel;
      try {
        channel = await gw.startProcess(
          call.sandboxId,
          {
            argv: relativeCwd ? ['/bin/sh', '-c', 'cd -- "$1" || exit 1; shift; exec "$@"', 'sh', relativeCwd, ...argv] : argv,
            env: { ...cfg.envs },
            ...(cfg.cwd && !relativeCwd ? { cwd: cfg.cwd } : {}),
            user: call.user,
            // The deadline of the call is the lifetime of the command (E2B); none = no deadline.
            timeoutMs: deadline !== undefined && deadline > 0 ? deadline : 0,
            // a terminal always takes input (the SDK's pty.sendInput; envd keeps it open)
            keepStdinOpen: pty ? true : (req.stdin ?? false),
            ...(pty ? { pty } : {}),
          },
          { kind: 'stream' },
        );
        // A terminal the sandbox could not give (no agent, bhyve) is refused, not run without one.
        const never = channel.exit;
        if (pty && never?.error && never.exitCode === null && never.signal === null) throw fromErrorInfo(never.error);
      } catch (err) {
        throw asConnectError(err);
      }
      if (pty) onTerminal.add(channel);
      started.set(channel, { cmd: cfg.cmd, args: [...cfg.args], envs: { ...cfg.envs }, ...(cfg.cwd ? { cwd: cfg.cwd } : {}), ...(req.tag ? { tag: req.tag } : {}) });
      const stream = new ChannelStream(channel, 0);
      try {
        const pid = await pidOf(channel);
        yield create(StartResponseSchema, { event: { event: { case: 'start', value: { pid } } } });
        for await (const event of events(stream, ctx, 'the command reached its deadline (timeoutMs) and was killed', !!pty)) yield create(StartResponseSchema, { event });
      } finally {
        stream.close();
      }
    },

    async *connect(req, ctx) {
      const call = envdCall(ctx);
      const e = await find(call.sandboxId, req.process, false);
      const pid = await pidOf(e.channel);
      // Output from now on (as envd); a command that already ended answers start + end, so a late
      // client still learns its exit.
      const stream = new ChannelStream(e.channel, e.channel.outputBytes);
      try {
        yield create(ConnectResponseSchema, { event: { event: { case: 'start', value: { pid } } } });
        for await (const event of events(stream, ctx, 'the attach reached its deadline (timeoutMs); the command keeps running', onTerminal.has(e.channel))) yield create(ConnectResponseSchema, { event });
      } finally {
        stream.close();
      }
    },

    async list(_req, ctx) {
      const call = envdCall(ctx);
      const processes = [];
      for (const e of gw.processes.list(call.sandboxId)) {
        if (e.channel.exit) continue;
        const pid = await pidOf(e.channel);
        if (e.channel.exit) continue;
        const s = started.get(e.channel);
        const [cmd = '', ...args] = e.channel.argv;
        processes.push({
          pid,
          config: s ? { cmd: s.cmd, args: s.args, envs: s.envs, ...(s.cwd ? { cwd: s.cwd } : {}) } : { cmd, args, envs: {} },
          ...(s?.tag ? { tag: s.tag } : {}),
        });
      }
      return { processes };
    },

    async sendInput(req, ctx) {
      const call = envdCall(ctx);
      const input = req.input?.input;
      if (input?.case !== 'stdin' && input?.case !== 'pty') throw new ConnectError('input.stdin or input.pty is required', Code.InvalidArgument);
      const e = await find(call.sandboxId, req.process, true);
      if (input.case === 'pty' && !onTerminal.has(e.channel)) throw new ConnectError('input.pty: this process has no terminal (send input.stdin)', Code.FailedPrecondition);
      if (!e.stdinOpen || !e.ref) throw new ConnectError('stdin of this process is closed (start it with stdin: true)', Code.FailedPrecondition);
      if (input.value.length > 0) e.ref.send({ type: 'STDIN', data: Buffer.from(input.value) });
      // Backpressure: answer once the command has taken most of what waits for it.
      if (e.channel.stdinBacklog() > STDIN_HIGH_WATER) {
        await Promise.race([new Promise<void>((r) => e.channel.onceStdinDrained(r)), e.channel.exited]);
      }
      return {};
    },

    async sendSignal(req, ctx) {
      const call = envdCall(ctx);
      const signal = req.signal === Signal.SIGKILL ? 'SIGKILL' : req.signal === Signal.SIGTERM ? 'SIGTERM' : null;
      if (!signal) throw new ConnectError('signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM', Code.InvalidArgument);
      const e = await find(call.sandboxId, req.process, true);
      if (!e.ref) throw new ConnectError('process has already exited', Code.NotFound);
      e.ref.send({ type: 'SIGNAL', signal });
      return {};
    },

    async closeStdin(req, ctx) {
      const call = envdCall(ctx);
      const e = await find(call.sandboxId, req.process, true);
      if (e.stdinOpen) {
        e.stdinOpen = false;
        e.ref?.send({ type: 'CLOSE_STDIN' });
      }
      return {};
    },

    async update(req, ctx) {
      const call = envdCall(ctx);
      const size = ptySize(req.pty);
      const e = await find(call.sandboxId, req.process, true);
      if (!onTerminal.has(e.channel)) throw new ConnectError('pty: this process has no terminal (start it with pty)', Code.FailedPrecondition);
      if (!e.ref) throw new ConnectError('process has already exited', Code.NotFound);
      e.ref.send({ type: 'RESIZE', ...size });
      return {};
    },

    async streamInput() {
      throw new ConnectError('StreamInput is not supported by coppice (use SendInput)', Code.Unimplemented);
    },
  };
}
