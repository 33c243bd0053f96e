// `sandbox.commands`: E2B's shape (run, run in the background, list, connect) over coppice's two
// exec paths. A plain `run` is one REST call (output captured by the gateway, UTF-8, capped:
// `truncated` says so); with `onStdout`/`onStderr`, or `background: true`, it streams over the
// exec WebSocket and nothing is capped.
//
// As in E2B, a command that does not exit 0 (code, signal or deadline) rejects with a
// CommandExitError carrying the whole result; the gateway refusing to run it at all is a
// CoppiceApiError as everywhere else.
import type { ExecResultView, ProcessView } from '../protocol/views.ts';
import { CoppiceError } from './errors.ts';
import type { ExecStream } from './exec-stream.ts';

export type CommandResult = ExecResultView;

export type ProcessInfo = ProcessView;

export interface CommandOptions {
  /** Environment variables of the command (E2B's `envs`). */
  envs?: Record<string, string>;
  /** Working directory inside the sandbox (absolute). */
  cwd?: string;
  /** User inside the sandbox (default: the template's). */
  user?: string;
  /** Kill the command after this many ms (0 = never; default 60 000 for run, none in the background). */
  timeoutMs?: number;
  /** Text given to the command's stdin, which is then closed. */
  stdin?: string;
  /** Each piece of stdout as it is produced (UTF-8 text); makes `run` stream. */
  onStdout?: (data: string) => void;
  onStderr?: (data: string) => void;
}

/** The command did not exit 0: `.result` is what it did (exit code, signal, output). */
export class CommandExitError extends CoppiceError {
  readonly result: CommandResult;
  constructor(result: CommandResult) {
    const why = result.reason === 'timeout' ? 'hit its deadline' : result.signal ? `died of ${result.signal}` : `exited with code ${result.exitCode}`;
    super('command_exit', `the command ${why}${result.stderr ? `: ${result.stderr.trim().slice(-500)}` : ''}`);
    this.result = result;
  }
  get exitCode(): number | null {
    return this.result.exitCode;
  }
  get stdout(): string {
    return this.result.stdout;
  }
  get stderr(): string {
    return this.result.stderr;
  }
}

/** What Commands needs from its sandbox: the two exec paths and the process list. */
export interface CommandTarget {
  exec(cmd: string | string[], opts: { env?: Record<string, string>; cwd?: string; user?: string; timeoutMs?: number; stdin?: string }): Promise<ExecResultView>;
  execStream(cmd: string | string[], opts: { env?: Record<string, string>; cwd?: string; user?: string; timeoutMs?: number; stdin?: boolean; onStdout?: (d: Uint8Array) => void; onStderr?: (d: Uint8Array) => void }): ExecStream;
  attach(processID: string, opts?: { onStdout?: (d: Uint8Array) => void; onStderr?: (d: Uint8Array) => void }): ExecStream;
  processes(): Promise<ProcessView[]>;
}

export class Commands {
  constructor(private readonly sb: CommandTarget) {}

  /** Run to completion: the result, or a CommandExitError when it does not exit 0. */
  run(cmd: string | string[], opts?: CommandOptions & { background?: false }): Promise<CommandResult>;
  /** Start it and return at once: the stream (output, stdin, signals; `await handle.exited`). */
  run(cmd: string | string[], opts: Omit<CommandOptions, 'stdin' | 'onStdout' | 'onStderr'> & { background: true; stdin?: boolean; onStdout?: (data: Uint8Array) => void; onStderr?: (data: Uint8Array) => void }): Promise<ExecStream>;
  async run(cmd: string | string[], opts: (CommandOptions & { background?: boolean }) | Record<string, unknown> = {}): Promise<CommandResult | ExecStream> {
    const o = opts as Omit<CommandOptions, 'stdin'> & { background?: boolean; stdin?: string | boolean };
    const base = { env: o.envs, cwd: o.cwd, user: o.user, timeoutMs: o.timeoutMs };
    if (o.background) {
      const s = this.sb.execStream(cmd, { ...base, stdin: o.stdin === true, onStdout: o.onStdout as never, onStderr: o.onStderr as never });
      await s.ready;
      return s;
    }
    const stdin = typeof o.stdin === 'string' ? o.stdin : undefined;
    const result = o.onStdout || o.onStderr ? await this.streamed(cmd, { ...base, timeoutMs: o.timeoutMs ?? 60_000 }, stdin, o) : await this.sb.exec(cmd, { ...base, stdin });
    if (result.exitCode !== 0) throw new CommandExitError(result);
    return result;
  }

  /** Running and recently finished commands. */
  list(): Promise<ProcessInfo[]> {
    return this.sb.processes();
  }

  /** Re-attach to a command by its processID (all the output the gateway still keeps, then live). */
  async connect(processID: string, opts: { onStdout?: (data: Uint8Array) => void; onStderr?: (data: Uint8Array) => void } = {}): Promise<ExecStream> {
    const s = this.sb.attach(processID, opts);
    await s.ready;
    return s;
  }

  private async streamed(
    cmd: string | string[],
    base: { env?: Record<string, string>; cwd?: string; user?: string; timeoutMs?: number },
    stdin: string | undefined,
    cb: Pick<CommandOptions, 'onStdout' | 'onStderr'>,
  ): Promise<CommandResult> {
    const started = Date.now();
    const text = { stdout: '', stderr: '' };
    const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    const sink = (name: 'stdout' | 'stderr', user?: (s: string) => void) => (d: Uint8Array) => {
      const piece = decoders[name].decode(d, { stream: true });
      text[name] += piece;
      if (piece) user?.(piece);
    };
    const s = this.sb.execStream(cmd, { ...base, stdin: stdin !== undefined, onStdout: sink('stdout', cb.onStdout), onStderr: sink('stderr', cb.onStderr) });
    if (stdin !== undefined) {
      s.write(stdin);
      s.closeStdin();
    }
    const exit = await s.exited;
    text.stdout += decoders.stdout.decode();
    text.stderr += decoders.stderr.decode();
    return {
      processID: exit.processID,
      exitCode: exit.exitCode,
      signal: exit.signal,
      stdout: text.stdout,
      stderr: text.stderr,
      truncated: false,
      ...(exit.reason ? { reason: exit.reason } : {}),
      durationMs: Date.now() - started,
    };
  }
}
