// One way to run a host tool: argv only (no shell), optional stdin (for `ip -batch -`), an AbortSignal,
// and an error whose message carries the tool's stderr, because that is what an operator needs.
import { spawn } from 'node:child_process';

export interface RunOptions {
  input?: string;
  signal?: AbortSignal;
  /** stdio for stdout/stderr other than pipes, e.g. a log fd for `runc create` (see runc.ts). */
  outFd?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    opts?: { cause?: unknown },
  ) {
    super(`${argv.join(' ')}: ${stderr.trim() || (exitCode === null ? 'killed' : `exit ${exitCode}`)}`, opts);
    this.name = 'CommandError';
  }
}

export function run(file: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const argv = [file, ...args];
    const out = opts.outFd ?? 'pipe';
    const child = spawn(file, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', out, out],
      signal: opts.signal,
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => stdout.push(b));
    child.stderr?.on('data', (b: Buffer) => stderr.push(b));
    child.on('error', (err) => reject(new CommandError(argv, null, err.message, { cause: err })));
    child.on('close', (code, sig) => {
      const res = { stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() };
      if (code === 0) resolve(res);
      else reject(new CommandError(argv, code, res.stderr || (sig ? `killed by ${sig}` : '')));
    });
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => {}); // EPIPE if the tool exits early; 'close' reports the real error
      child.stdin?.end(opts.input);
    }
  });
}
