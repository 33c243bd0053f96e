// Start a helper node process, recorded in the manifest (pid + start time) and stopped with
// SIGINT by its pid at cleanup.
import { spawn, type ChildProcess } from 'node:child_process';
import { onCleanup, pidStart, record, sameProcess } from './cleanup.ts';
import { sleep } from './host.ts';

export interface Helper {
  proc: ChildProcess;
  /** First stdout line matching `ready`, split on spaces (without the word). */
  ready: string[];
  stderr(): string;
  stop(): Promise<void>;
}

export async function startHelper(args: string[], what: string, opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Helper> {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => (err += b));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const pid = proc.pid!;
  const start = pidStart(pid);
  const unrecord = record({ kind: 'pid', pid, start, what });
  const stop = async () => {
    if (sameProcess(pid, start)) {
      proc.kill('SIGINT');
      const killed = await Promise.race([exited.then(() => true), sleep(60_000).then(() => false)]);
      if (!killed && sameProcess(pid, start)) proc.kill('SIGKILL');
    }
    unrecord();
  };
  const unregister = onCleanup(what, stop);
  const ready = await new Promise<string[]>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what}: not ready within ${opts.timeoutMs ?? 60_000} ms: ${err}`)), opts.timeoutMs ?? 60_000);
    proc.stdout!.on('data', (b: Buffer) => {
      out += b;
      const line = out.split('\n').find((l) => l.startsWith('ready '));
      if (line) {
        clearTimeout(timer);
        resolve(line.split(' ').slice(1));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited ${code}: ${err}`));
    });
  });
  proc.stdout!.resume();
  return {
    proc,
    ready,
    stderr: () => err,
    stop: async () => {
      unregister();
      await stop();
    },
  };
}
