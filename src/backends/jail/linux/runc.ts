// Thin wrappers over the runc CLI (1.1.x). Each call costs a runc start-up (~25 ms here), which is why
// pause/resume bypass runc (freezer.ts) and destroy uses a single `delete --force`.
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CommandError, run } from './run.ts';

/** Host pid of the container's PID 1, written by `runc create` into the bundle (see teardown.ts). */
export const INIT_PID_FILE = 'init.pid';

export interface RuncContainer {
  id: string;
  pid: number;
  status: string; // created | running | paused | stopped
  bundle: string;
}

export class Runc {
  constructor(readonly bin = 'runc') {}

  /**
   * `runc create` without a terminal hands its own stdout/stderr to the container's PID 1, which keeps
   * them open forever: with pipes we would never see EOF. So both go to a log file in the bundle,
   * which is also where runc's own error message lands when create fails.
   */
  async create(container: string, bundle: string, signal?: AbortSignal): Promise<void> {
    const logPath = join(bundle, 'create.log');
    const fd = openSync(logPath, 'w', 0o600);
    try {
      const args = ['create', '--bundle', bundle, '--pid-file', join(bundle, INIT_PID_FILE), container];
      await run(this.bin, args, { outFd: fd, signal });
    } catch (err) {
      let log = '';
      try {
        log = readFileSync(logPath, 'utf8').trim();
      } catch {
        /* the bundle may already be gone */
      }
      if (err instanceof CommandError && log) {
        throw new CommandError(err.argv, err.exitCode, log, { cause: err });
      }
      throw err;
    } finally {
      closeSync(fd);
    }
  }

  async start(container: string, signal?: AbortSignal): Promise<void> {
    await run(this.bin, ['start', container], { signal });
  }

  /**
   * Removes runc's state, SIGKILLing what still runs. Tolerates "does not exist". On a running
   * container runc 1.1 sleeps in 100 ms steps until it is dead; on a stopped one it returns at once.
   */
  async deleteForce(container: string): Promise<void> {
    try {
      await run(this.bin, ['delete', '--force', container]);
    } catch (err) {
      if (err instanceof CommandError && /does not exist|not exist|no such/i.test(err.stderr)) return;
      throw err;
    }
  }

  async list(): Promise<RuncContainer[]> {
    const { stdout } = await run(this.bin, ['list', '--format', 'json']);
    // runc prints `null` when there are no containers.
    const parsed = JSON.parse(stdout.trim() || 'null') as RuncContainer[] | null;
    return parsed ?? [];
  }

  async state(container: string): Promise<RuncContainer | null> {
    try {
      const { stdout } = await run(this.bin, ['state', container]);
      return JSON.parse(stdout) as RuncContainer;
    } catch (err) {
      if (err instanceof CommandError && /does not exist/i.test(err.stderr)) return null;
      throw err;
    }
  }
}
