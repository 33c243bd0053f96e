// A template's start command: a directory template may carry `etc/coppice/start` (an executable
// script in its root filesystem), run as root once per sandbox right after the create, before the
// sandbox is handed out (pool slots run it before they are parked). It starts a template's own
// services (the code-interpreter server) and returns once they answer. A failing start fails the
// create: a template that promises a service must not hand out a sandbox without it.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend, SandboxHandle } from '../backends/types.ts';
import { backendFailed } from '../errors.ts';

export const START_SCRIPT = '/etc/coppice/start';
const START_DEADLINE_MS = 60_000;

/** Does this template (a root filesystem directory) have a start command? */
export function hasStartCommand(templatePath: string): boolean {
  try {
    return statSync(join(templatePath, START_SCRIPT)).isFile();
  } catch {
    return false;
  }
}

export async function runStartCommand(backend: Backend, handle: SandboxHandle, signal?: AbortSignal): Promise<void> {
  const p = backend.exec(handle, { argv: ['/bin/sh', START_SCRIPT], user: 'root', cwd: '/' });
  p.stdin.end();
  const tail: Buffer[] = [];
  let kept = 0;
  const keep = (c: Buffer) => {
    // The last few KiB of what it said, for the error (its services log elsewhere).
    tail.push(c);
    kept += c.length;
    while (kept > 4096 && tail.length > 1) kept -= tail.shift()!.length;
  };
  p.stdout.on('data', keep);
  p.stderr.on('data', keep);
  const stop = () => p.kill('SIGKILL');
  const timer = setTimeout(stop, START_DEADLINE_MS);
  signal?.addEventListener('abort', stop, { once: true });
  try {
    const exit = await p.exited;
    if (exit.exitCode !== 0) {
      const said = Buffer.concat(tail).toString('utf8').trim().slice(-1000);
      throw backendFailed(`the template's start command (${START_SCRIPT}) failed (${exit.signal ?? `exit ${exit.exitCode}`})${said ? `: ${said}` : ''}`);
    }
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', stop);
  }
}
