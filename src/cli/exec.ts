// `coppice exec <sandboxID> [flags] -- cmd [args...]`: run a command in a sandbox, stream its
// stdout/stderr to ours (raw bytes), forward our stdin and our SIGINT/SIGTERM/SIGHUP, and exit
// with the command's code.
//
// Exit status: the command's exit code; 128+N when it died of signal N; 124 when the gateway
// killed it at --timeout-ms (as timeout(1)); 125 when coppice itself failed (gateway unreachable,
// 401/404/409...: the message goes to stderr, as `docker exec` does); 2 for bad usage.
// A first Ctrl-C is forwarded as SIGINT, a second as SIGKILL.
import { constants } from 'node:os';
import { parseArgs } from 'node:util';
import { CoppiceApiError, ConnectionError, Sandbox, type ExecStream, type ExitResult } from '../sdk/index.ts';
import { argsMessage, checkUrl, colorsFor, connectionMessage, oneLine, UsageError } from './common.ts';
import { flagLines, GLOBAL_HELP, parseOptions, type FlagSpec } from './help.ts';

export const EXEC_FLAGS: Record<string, FlagSpec> = {
  cwd: { type: 'string', arg: 'DIR', help: 'working directory inside the sandbox' },
  user: { type: 'string', arg: 'NAME', help: 'user inside the sandbox' },
  env: { type: 'string', arg: 'K=V', multiple: true, help: 'environment variable' },
  'timeout-ms': { type: 'string', arg: 'N', help: 'kill the command after N ms (exit status 124)' },
  'no-stdin': { type: 'boolean', help: 'do not forward stdin (the command\'s stdin is closed at start)' },
  attach: { type: 'string', arg: 'ID', help: 're-attach to a running or recently finished command instead of starting one' },
  from: { type: 'string', arg: 'OFFSET', help: 'with --attach: resume output at this byte offset' },
};

export const EXEC_USAGE = `usage: coppice exec <sandboxID> [flags] -- <cmd> [args...]
       coppice exec <sandboxID> --attach <processID> [--from OFFSET]

  Streams stdout/stderr, forwards stdin and Ctrl-C (a second one: SIGKILL). Exit status: the
  command's; 128+N for signal N; 124 for --timeout-ms; 125 when coppice itself failed; 2 for usage.
  --json prints JSON lines (started, stdout/stderr as base64, exit) instead of raw bytes.

flags:
${flagLines(EXEC_FLAGS)}
${GLOBAL_HELP}`;

const BASE_OPTIONS = parseOptions(EXEC_FLAGS);

export interface ExecIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; pause(): unknown; resume(): unknown; destroy?(): unknown };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  /** Signal source (process); tests may pass their own emitter. */
  signals: Pick<NodeJS.Process, 'on' | 'off'>;
}

export async function execCommand(argv: string[], io: ExecIo = defaultIo()): Promise<number> {
  const dash = argv.indexOf('--');
  const flagArgs = dash < 0 ? argv : argv.slice(0, dash);
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  let values: {
    url?: string; key?: string; json?: boolean; cwd?: string; user?: string; env?: string[];
    'timeout-ms'?: string; 'no-stdin'?: boolean; attach?: string; from?: string; help?: boolean;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: flagArgs, options: BASE_OPTIONS, allowPositionals: true, strict: true }) as never);
  } catch (err) {
    return usage(io, argsMessage(err).replace('(see --help)', '(coppice exec --help)'));
  }
  if (values.help) {
    io.stdout.write(EXEC_USAGE);
    return 0;
  }
  if (positionals.length !== 1) return usage(io, 'give exactly one sandbox id before "--"');
  const attach = values.attach;
  if (attach === undefined && command.length === 0) return usage(io, 'no command: put it after "--"');
  if (attach !== undefined && command.length > 0) return usage(io, '--attach takes no command');
  const env: Record<string, string> = {};
  for (const kv of values.env ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) return usage(io, `--env ${kv}: must be KEY=VALUE`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const timeoutMs = values['timeout-ms'] === undefined ? undefined : Number(values['timeout-ms']);
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 0)) return usage(io, '--timeout-ms: must be a non-negative integer');
  const from = values.from === undefined ? undefined : Number(values.from);
  if (from !== undefined && (!Number.isInteger(from) || from < 0)) return usage(io, '--from: must be a non-negative integer');

  const json = values.json ?? false;
  const emit = (o: object) => io.stdout.write(JSON.stringify(o) + '\n');
  const fail = (err: unknown): number => {
    const message = err instanceof ConnectionError ? connectionMessage(err) : oneLine(err instanceof Error ? err.message : String(err));
    if (json) emit({ type: 'error', ...(err instanceof CoppiceApiError ? { code: err.status, error: err.code } : {}), message });
    io.stderr.write(`${colorsFor(io.stderr, io.env)('31', 'coppice exec:')} ${message}\n`);
    return 125;
  };

  const url = values.url ?? io.env.COPPICE_URL;
  try {
    checkUrl(url);
  } catch (err) {
    return usage(io, (err as UsageError).message);
  }

  let sandbox: Sandbox;
  try {
    sandbox = await Sandbox.get(positionals[0]!, {
      url,
      apiKey: values.key ?? io.env.COPPICE_API_KEY,
    });
  } catch (err) {
    return fail(err);
  }

  // Output: raw bytes (or JSON lines), holding the stream back while our stdout is full.
  let stream!: ExecStream;
  // --json: the started/attached line comes first, even when output arrives in the same read as
  // the gateway's "started" (the ready promise settles a microtask after the frames are handled).
  let announced = false;
  const announce = () => {
    if (!json || announced || stream.processID === undefined) return;
    announced = true;
    emit({ type: attach === undefined ? 'started' : 'attached', processID: stream.processID });
  };
  const sink = (out: NodeJS.WritableStream, name: 'stdout' | 'stderr') => (data: Uint8Array) => {
    announce();
    const b64 = () => Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
    const ok = json ? io.stdout.write(JSON.stringify({ type: name, data: b64() }) + '\n') : out.write(data);
    if (!ok) {
      stream.pause();
      (json ? io.stdout : out).once('drain', () => stream.resume());
    }
  };
  const callbacks = {
    onStdout: sink(io.stdout, 'stdout'),
    onStderr: sink(io.stderr, 'stderr'),
    onDropped: (bytes: number, at: number) => {
      announce();
      if (json) emit({ type: 'dropped', bytes, at });
      else io.stderr.write(`coppice exec: ${bytes} bytes of output at offset ${at} were no longer kept\n`);
    },
    onError: (err: CoppiceApiError) => io.stderr.write(`coppice exec: ${err.message}\n`),
  };
  const forwardStdin = attach === undefined && !values['no-stdin'];
  stream =
    attach !== undefined
      ? sandbox.attach(attach, { from, ...callbacks })
      : sandbox.execStream(command, { env, cwd: values.cwd, user: values.user, timeoutMs, stdin: forwardStdin, ...callbacks });

  // Signals: forwarded, a second SIGINT escalates to SIGKILL.
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (sig === 'SIGINT') interrupts += 1;
    stream.signal(interrupts > 1 ? 'SIGKILL' : sig);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) io.signals.on(s, onSignal);

  // Stdin: one chunk in flight at a time, so a fast producer cannot fill our memory.
  const onData = (chunk: Buffer) => {
    io.stdin.pause();
    stream.write(chunk, () => io.stdin.resume());
  };
  const onEnd = () => stream.closeStdin();
  if (forwardStdin) {
    io.stdin.on('data', onData);
    io.stdin.once('end', onEnd);
    io.stdin.resume();
  }

  try {
    await stream.ready;
    announce();
    const exit = await stream.exited;
    if (json) emit({ type: 'exit', ...exit });
    return exitStatus(exit);
  } catch (err) {
    return fail(err);
  } finally {
    for (const s of signals) io.signals.off(s, onSignal);
    if (forwardStdin) {
      io.stdin.off('data', onData);
      io.stdin.off('end', onEnd);
      io.stdin.pause();
    }
  }
}

/** The shell's convention: code, or 128+signal; 124 for the deadline (as timeout(1)). */
export function exitStatus(exit: Pick<ExitResult, 'exitCode' | 'signal' | 'reason' | 'error'>): number {
  if (exit.reason === 'timeout') return 124;
  if (exit.exitCode !== null) return exit.exitCode;
  if (exit.signal) return 128 + (constants.signals[exit.signal as NodeJS.Signals] ?? 0);
  return 125;
}

function usage(io: ExecIo, message: string): number {
  const hint = message.includes('--help') ? '' : ' (coppice exec --help)';
  io.stderr.write(`${colorsFor(io.stderr, io.env)('31', 'coppice exec:')} ${message}${hint}\n`);
  return 2;
}

function defaultIo(): ExecIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, signals: process };
}
