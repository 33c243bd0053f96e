// One command inside a sandbox: `runc exec --process <json>`, so argv/env/cwd reach the kernel exactly
// as given (no shell, no quoting). Without a terminal runc hands its own stdio fds to the command, so
// our pipes carry raw bytes end to end. The JSON and the pid file live in a runtime dir (/run,
// a tmpfs on a usual host), not the sandbox dir on the state disk: exec works while that is full.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { constants } from 'node:os';
import { basename, join } from 'node:path';
import { backendFailed } from '../../../errors.ts';
import type { ExecExit, ExecProcess } from '../../types.ts';
import type { OciProcess } from './oci-config.ts';

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(constants.signals).map(([name, num]) => [num, name] as [number, string]),
);

let seq = 0;

/** Files are `exec-<gateway pid>-<n>.{json,pid}`: a sweep can tell a dead gateway's leftovers (leftovers.ts). */
export const EXEC_FILE_PREFIX = 'exec-';

export interface StartExecInput {
  runc: string;
  container: string;
  /** Where the process JSON and runc's pid file go: outside every rootfs, root-only, off the state disk. */
  dir: string;
  process: OciProcess;
}

/**
 * Exit mapping. runc exec reports a command that died of signal N as exit code 128+N, exactly like a
 * shell would; a command that calls exit(130) looks the same. We only report `{exitCode: null,
 * signal}` when WE delivered that very signal through kill() and the code is 128+its number; any
 * other code, including 128+N for a signal someone else sent, is reported as a plain exit code.
 */
export function mapExit(code: number | null, runcSignal: NodeJS.Signals | null, delivered: Set<number>): ExecExit {
  if (code === null) return { exitCode: null, signal: runcSignal }; // runc itself died of a signal
  if (code > 128 && delivered.has(code - 128)) {
    return { exitCode: null, signal: SIGNAL_NAMES.get(code - 128) ?? `SIG${code - 128}` };
  }
  return { exitCode: code, signal: null };
}

export function startExec(input: StartExecInput): ExecProcess {
  const n = ++seq;
  const base = join(input.dir, `${EXEC_FILE_PREFIX}${process.pid}-${n}`);
  const processFile = `${base}.json`;
  const pidFile = `${base}.pid`;
  writeFileSync(processFile, JSON.stringify(input.process), { mode: 0o600 });

  const child = spawn(input.runc, ['exec', '--process', processFile, '--pid-file', pidFile, input.container], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // A command that exits without reading stdin makes later writes EPIPE; that is not our crash.
  child.stdin.on('error', () => undefined);

  const delivered = new Set<number>();
  let done = false;
  // runc has exited (it reaped the command): from here the pid may belong to someone else.
  let reaped = false;
  child.on('exit', () => (reaped = true));
  let pending: NodeJS.Signals[] = [];
  let poll: NodeJS.Timeout | undefined;

  // Signals go straight to the command's host pid (from --pid-file) rather than through runc's
  // forwarding: runc does forward catchable signals, but SIGKILL/SIGSTOP kill/stop runc itself, and
  // a signal that lands before runc installs its handler would kill runc and orphan the command.
  // The pid cannot be recycled while runc lives: runc is its parent and exits right after reaping;
  // once runc has exited (output may still be draining) we signal nothing.
  const hostPid = (): number | null => {
    try {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
  };
  const deliver = (sig: NodeJS.Signals): boolean => {
    if (reaped) return true;
    const pid = hostPid();
    if (pid === null) return false;
    delivered.add(constants.signals[sig]);
    try {
      process.kill(pid, sig);
    } catch {
      /* already exited */
    }
    return true;
  };
  const flush = () => {
    poll = undefined;
    if (done) return;
    if (hostPid() === null) {
      poll = setTimeout(flush, 5);
      return;
    }
    const sigs = pending;
    pending = [];
    for (const s of sigs) deliver(s);
  };

  // The in-sandbox PID: the last NSpid field of the host pid's status. Read while runc still waits
  // for the command (before that the pid file may not exist yet; after it the pid may be reused).
  let nsPid: Promise<number | null> | undefined;
  // A short command can be over (and reaped) moments after runc writes the pid file: an inotify
  // watch on the sandbox dir reads it at once, a slow poll is the fallback.
  const readNsPid = (): Promise<number | null> =>
    new Promise((resolve) => {
      const since = Date.now();
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      let watcher: FSWatcher | undefined;
      const settle = (pid: number | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        watcher?.close();
        resolve(pid);
      };
      const tick = () => {
        if (settled) return;
        if (done || reaped) return settle(null);
        const host = hostPid();
        if (host !== null) return settle(nsPidOf(host));
        if (Date.now() - since > 30_000) return settle(null);
        timer = setTimeout(tick, 10);
      };
      try {
        watcher = watch(input.dir, (_event, name) => {
          if (name === basename(pidFile)) tick();
        });
        watcher.on('error', () => undefined);
      } catch {
        /* no inotify: polling only */
      }
      tick();
    });

  const cleanup = () => {
    done = true;
    if (poll) clearTimeout(poll);
    rmSync(processFile, { force: true });
    rmSync(pidFile, { force: true });
  };

  const exited = new Promise<ExecExit>((resolve, reject) => {
    child.on('error', (err) => {
      cleanup();
      reject(backendFailed(`exec in ${input.container}: ${err.message}`, err));
    });
    // 'close' fires after stdout and stderr have both ended (the interface's promise).
    child.on('close', (code, sig) => {
      cleanup();
      resolve(mapExit(code, sig, delivered));
    });
  });

  return {
    stdout: child.stdout,
    stderr: child.stderr,
    stdin: child.stdin,
    exited,
    kill(sig: NodeJS.Signals) {
      if (done) return;
      if (constants.signals[sig] === undefined) throw new Error(`unknown signal ${sig}`);
      if (pending.length > 0 || !deliver(sig)) {
        // Not started yet: queue, keep order, deliver as soon as runc has written the pid file.
        pending.push(sig);
        if (!poll) poll = setTimeout(flush, 5);
      }
    },
    pid() {
      return (nsPid ??= readNsPid());
    },
  };
}

/** `NSpid:\t<host>\t...\t<innermost>` in /proc/<pid>/status: the last field is the sandbox's view. */
export function nsPidOf(hostPid: number): number | null {
  try {
    const line = readFileSync(`/proc/${hostPid}/status`, 'utf8').split('\n').find((l) => l.startsWith('NSpid:'));
    const last = line?.trim().split(/\s+/).pop();
    const n = Number(last);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}
