// backend.exec through a sandbox's agent: the same argv/env/cwd/user contract as the `runc exec`
// path (oci-config.ts buildExecProcess), and the same exit mapping (exec.ts mapExit).
import { constants } from 'node:os';
import { badRequest } from '../../../../errors.ts';
import type { ExecExit, ExecProcess } from '../../../types.ts';
import { DEFAULT_PATH } from '../oci-config.ts';
import type { ResolvedUser } from '../users.ts';
import type { AgentClient } from './client.ts';
import type { AgentProcess } from './process.ts';

export interface AgentExecInput {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  user: ResolvedUser;
  pty?: { cols: number; rows: number };
}

/** The environment runc exec's process.json gets: PATH, HOME, USER, then the caller's. */
export function execEnv(user: ResolvedUser, env?: Record<string, string>): string[] {
  const m = new Map<string, string>([
    ['PATH', DEFAULT_PATH.slice('PATH='.length)],
    ['HOME', user.home],
    ['USER', user.name],
  ]);
  for (const [k, v] of Object.entries(env ?? {})) m.set(k, v);
  return [...m].map(([k, v]) => `${k}=${v}`);
}

/**
 * The agent reports a death by signal as such; the runc path could only see 128+N and reported a
 * signal only when we had delivered it. Keep that contract: a signal nobody here sent (the command
 * killed itself, `kill -9 $$`) is the exit code a shell would show.
 */
export function mapAgentExit(exit: ExecExit, delivered: Set<number>): ExecExit {
  if (exit.signal === null) return exit;
  const n = constants.signals[exit.signal as NodeJS.Signals];
  if (n === undefined || delivered.has(n)) return exit;
  return { exitCode: 128 + n, signal: null };
}

/** Start a command through the agent. Throws bad_request for input the agent could not carry. */
export function agentExec(client: AgentClient, input: AgentExecInput): ExecProcess & { started: Promise<number> } {
  let p: AgentProcess;
  try {
    p = client.exec({
      argv: input.argv,
      env: execEnv(input.user, input.env),
      cwd: input.cwd ?? input.user.home,
      cred: { uid: input.user.uid, gid: input.user.gid, groups: input.user.additionalGids },
      ...(input.pty ? { pty: { cols: input.pty.cols, rows: input.pty.rows } } : {}),
    });
  } catch (e) {
    // encodeStart's RangeErrors name the field first: "argv[2]: contains a NUL byte"
    if (e instanceof RangeError) {
      const field = /^([\w.[\]]+):/.exec(e.message)?.[1]?.replace(/\[\d+\]$/, '') ?? 'argv';
      throw badRequest(field, e.message.replace(/^[\w.[\]]+:\s*/, ''));
    }
    throw e;
  }
  const delivered = new Set<number>();
  const exited = p.exited.then((e) => mapAgentExit(e, delivered));
  exited.catch(() => undefined);
  return {
    stdout: p.stdout,
    stderr: p.stderr,
    stdin: p.stdin,
    exited,
    started: p.started,
    kill(sig: NodeJS.Signals) {
      const n = constants.signals[sig];
      if (n === undefined) throw new Error(`unknown signal ${sig}`);
      delivered.add(n);
      p.kill(n); // to the process group; queued behind START on the one ordered connection
    },
    pid: () => p.pid(),
    // the agent's terminal sends the foreground group SIGWINCH
    ...(input.pty ? { resize: (cols: number, rows: number) => p.resize(cols, rows) } : {}),
  };
}
