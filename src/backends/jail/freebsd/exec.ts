// One command inside a FreeBSD jail: `jexec -l -U <user> coppice-<id> <argv...>`, streamed through
// the runner's spawn variant. jexec attaches to the jail and execs the command in place (no fork),
// so the host child IS the command: kill() signals it directly and its exit is the command's exit.
// argv reaches execvp as given (no shell). env and cwd go through two small wrappers that also take
// their arguments positionally, so nothing is ever re-parsed by a shell. UNTESTED ON REAL FREEBSD.
import { badRequest, backendFailed } from '../../../errors.ts';
import type { ExecExit, ExecProcess, ExecSpec } from '../../types.ts';
import { proc } from './commands.ts';
import type { CommandRunner, SpawnedCommand } from './runner.ts';

const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A jexec -U argument: a login name, never something getopt could read as an option. */
const USER_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** `sh -c` script for cwd: $1 is the directory, the rest is the command. */
export const CD_SCRIPT = 'cd -- "$1" || exit 1; shift; exec "$@"';
/** `sh -c` script that only execs: used when env(1) would mistake argv[0] (containing `=`) for an assignment. */
export const EXEC_SCRIPT = 'exec "$@"';

/** The argv run inside the jail for `spec` (after jexec's own arguments). */
export function commandArgv(spec: ExecSpec): string[] {
  if (!Array.isArray(spec.argv) || spec.argv.length === 0 || spec.argv.some((a) => typeof a !== 'string')) {
    throw badRequest('argv', 'must be a non-empty array of strings');
  }
  const out: string[] = [];
  const env = Object.entries(spec.env ?? {});
  if (env.length > 0) {
    for (const [k, v] of env) {
      if (!ENV_KEY_RE.test(k)) throw badRequest('env', `invalid variable name ${JSON.stringify(k)}`);
      if (typeof v !== 'string' || v.includes('\0')) throw badRequest('env', `invalid value for ${k}`);
    }
    out.push('/usr/bin/env', ...env.map(([k, v]) => `${k}=${v}`));
  }
  if (spec.cwd !== undefined && spec.cwd !== '') {
    out.push('/bin/sh', '-c', CD_SCRIPT, 'coppice-exec', spec.cwd);
  } else if (env.length > 0 && spec.argv[0].includes('=')) {
    out.push('/bin/sh', '-c', EXEC_SCRIPT, 'coppice-exec');
  }
  out.push(...spec.argv);
  return out;
}

export function execArgv(jailName: string, user: string, spec: ExecSpec): string[] {
  if (!USER_RE.test(user)) throw badRequest('user', `invalid user name ${JSON.stringify(user)}`);
  return proc.exec(jailName, user, commandArgv(spec));
}

/** Start `argv` through the runner and present it as an ExecProcess. */
export function startExec(runner: CommandRunner, argv: string[], label: string): ExecProcess {
  let cmd: SpawnedCommand;
  try {
    cmd = runner.spawn(argv);
  } catch (e) {
    throw backendFailed(`exec in ${label}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  let done = false;
  const exited: Promise<ExecExit> = cmd.exited.then(
    ({ code, signal }) => {
      done = true;
      return code === null ? { exitCode: null, signal: signal ?? null } : { exitCode: code, signal: null };
    },
    (err: unknown) => {
      done = true;
      throw backendFailed(`exec in ${label}: ${err instanceof Error ? err.message : String(err)}`, err);
    },
  );
  return {
    stdout: cmd.stdout,
    stderr: cmd.stderr,
    stdin: cmd.stdin,
    exited,
    kill(sig: NodeJS.Signals) {
      if (!done) cmd.kill(sig);
    },
  };
}
