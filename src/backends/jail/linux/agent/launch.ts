// `runc create` with coppice-agent as the container's init (docs/agent.md "The channel"): the host
// side of the agent binds the listening socket in the sandbox dir, moves it to fd 3 and execs runc,
// which hands fd 3 to the init (`--preserve-fds 1`). The socket has a path on the host only.
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CommandError, run } from '../run.ts';
import { INIT_PID_FILE } from '../runc.ts';

/** The agent's socket in a sandbox dir (outside its rootfs). */
export const AGENT_SOCKET = 'agent.sock';
/** A unix socket path is at most 107 bytes (sun_path is 108 with its NUL). */
export const MAX_SOCKET_PATH = 107;

export interface AgentCreateInput {
  runc: string;
  /** The agent binary on the host (the same file the config bind-mounts as the init). */
  agent: string;
  container: string;
  bundle: string;
  signal?: AbortSignal;
}

/** Like Runc.create: runc's output (and the agent's own, if it fails to bind) goes to create.log. */
export async function createUnderAgent(input: AgentCreateInput): Promise<void> {
  const logPath = join(input.bundle, 'create.log');
  const sock = join(input.bundle, AGENT_SOCKET);
  if (sock.length > MAX_SOCKET_PATH) throw new Error(`agent socket path is over ${MAX_SOCKET_PATH} bytes: use a shorter --state-dir`);
  const fd = openSync(logPath, 'w', 0o600);
  try {
    const args = ['--bind', sock, '--', input.runc, 'create', '--preserve-fds', '1', '--bundle', input.bundle, '--pid-file', join(input.bundle, INIT_PID_FILE), input.container];
    await run(input.agent, args, { outFd: fd, signal: input.signal });
  } catch (err) {
    let log = '';
    try {
      log = readFileSync(logPath, 'utf8').trim();
    } catch {
      /* the bundle may already be gone */
    }
    if (err instanceof CommandError && log) throw new CommandError(err.argv, err.exitCode, log, { cause: err });
    throw err;
  } finally {
    closeSync(fd);
  }
}
