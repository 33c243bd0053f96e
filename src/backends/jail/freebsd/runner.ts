// How the FreeBSD jail driver reaches the host: every command goes through a CommandRunner, so the
// whole command plan can be recorded and asserted on Linux (recording-runner.ts).
// UNTESTED ON REAL FREEBSD: there is no FreeBSD host here; only the argv sequences are checked.
import { execFile, spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

export interface RunOptions {
  signal?: AbortSignal;
}

/** A finished command. `code` is the exit status (non-zero is NOT a rejection; see `check`). */
export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** A streamed command (exec): raw byte streams, exit settles once after both outputs end. */
export interface SpawnedCommand {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
}

export interface CommandRunner {
  /** Run to completion. Rejects only when the program could not be started (or was aborted). */
  run(argv: string[], opts?: RunOptions): Promise<RunResult>;
  /** Start a long-running command with piped stdio (the spawn variant used by exec). */
  spawn(argv: string[]): SpawnedCommand;
}

/** A host command that exited non-zero; the message carries argv and stderr, which is what an operator needs. */
export class CommandFailed extends Error {
  constructor(
    readonly argv: string[],
    readonly result: RunResult,
  ) {
    super(`${argv.join(' ')}: ${result.stderr.trim() || `exit ${result.code}`}`);
    this.name = 'CommandFailed';
  }
}

/** Run and demand exit 0. */
export async function check(runner: CommandRunner, argv: string[], opts?: RunOptions): Promise<RunResult> {
  const res = await runner.run(argv, opts);
  if (res.code !== 0) throw new CommandFailed(argv, res);
  return res;
}

/**
 * Run a removal that must tolerate "already gone": exit 0, or a non-zero exit whose stderr matches
 * `gone`, both count as success. Returns false when the object was already gone.
 */
export async function removeTolerant(runner: CommandRunner, argv: string[], gone: RegExp): Promise<boolean> {
  const res = await runner.run(argv);
  if (res.code === 0) return true;
  if (gone.test(res.stderr)) return false;
  throw new CommandFailed(argv, res);
}

/** The real runner: execFile for run (no shell), spawn for streamed exec. */
export class ExecFileRunner implements CommandRunner {
  run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    const [file, ...args] = argv;
    return new Promise((resolve, reject) => {
      execFile(file, args, { signal: opts.signal, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr, code: 0 });
        const code = (err as { code?: unknown }).code;
        // A numeric code is the exit status; anything else (ENOENT, ABORT_ERR, killed) is a failure to run.
        if (typeof code === 'number') return resolve({ stdout, stderr, code });
        reject(err);
      });
    });
  }

  spawn(argv: string[]): SpawnedCommand {
    const [file, ...args] = argv;
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.on('error', () => undefined); // EPIPE when the command does not read stdin
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.on('error', reject);
      // 'close' fires after stdout and stderr have ended.
      child.on('close', (code, signal) => resolve({ code, signal }));
    });
    return {
      stdout: child.stdout,
      stderr: child.stderr,
      stdin: child.stdin,
      exited,
      kill: (sig) => {
        child.kill(sig);
      },
    };
  }
}
