// envd's polled watchers (CreateWatcher / GetWatcherEvents / RemoveWatcher), which the Python
// SDK's sync `files.watch_dir` uses instead of the WatchDir stream: each watcher is a WatchDir
// (watch.ts, the same in-sandbox polling) consumed by the gateway into a buffer that
// GetWatcherEvents drains. Watchers belong to their sandbox (another sandbox's id is not_found),
// are bounded in number and in buffered events, and one nobody polls for IDLE_MS is removed (a
// client that died does not leave a helper running in the sandbox).
import { Code, ConnectError } from '@connectrpc/connect';
import { randomBytes } from 'node:crypto';
import type { EventType } from './gen/filesystem/filesystem_pb.ts';
import { asConnectError } from './rpc-errors.ts';
import type { FsTarget } from './sandbox-fs.ts';
import { watchDir } from './watch.ts';

export const MAX_WATCHERS_PER_SANDBOX = 32;
/** Events waiting for a poll beyond this end the watcher (never drop events silently). */
export const MAX_BUFFERED_EVENTS = 10_000;
export const IDLE_MS = 10 * 60_000;

interface Watcher {
  sandboxId: string;
  abort: AbortController;
  events: { name: string; type: EventType }[];
  /** Why the watch ended (sandbox gone, directory removed, too many events); reported once. */
  failed: ConnectError | null;
  idle: NodeJS.Timeout;
}

export interface WatcherRequest {
  path: string;
  recursive: boolean;
  includeEntry: boolean;
}

export class PolledWatchers {
  private readonly watchers = new Map<string, Watcher>();

  async create(t: FsTarget, req: WatcherRequest): Promise<string> {
    let mine = 0;
    for (const w of this.watchers.values()) if (w.sandboxId === t.sandboxId) mine++;
    if (mine >= MAX_WATCHERS_PER_SANDBOX) {
      throw new ConnectError(`at most ${MAX_WATCHERS_PER_SANDBOX} watchers per sandbox (remove one first)`, Code.ResourceExhausted);
    }
    const abort = new AbortController();
    const it = watchDir(t, { path: req.path, recursive: req.recursive, includeEntry: req.includeEntry }, abort.signal)[Symbol.asyncIterator]();
    // The first event is `start` once the directory is being watched; an error (not found, not a
    // directory, permission) is CreateWatcher's answer.
    try {
      await it.next();
    } catch (err) {
      abort.abort();
      throw asConnectError(err);
    }
    const id = randomBytes(12).toString('hex');
    const w: Watcher = { sandboxId: t.sandboxId, abort, events: [], failed: null, idle: this.idleTimer(id) };
    this.watchers.set(id, w);
    void (async () => {
      try {
        for (;;) {
          const r = await it.next();
          if (r.done) break;
          const ev = r.value.event;
          if (ev.case !== 'filesystem') continue;
          if (w.events.length >= MAX_BUFFERED_EVENTS) {
            throw new ConnectError(`more than ${MAX_BUFFERED_EVENTS} events waiting: poll GetWatcherEvents more often`, Code.ResourceExhausted);
          }
          w.events.push({ name: ev.value.name, type: ev.value.type });
        }
      } catch (err) {
        if (!abort.signal.aborted) w.failed = asConnectError(err);
      } finally {
        abort.abort();
        await it.return?.(undefined).catch(() => undefined);
      }
    })();
    return id;
  }

  /** The events since the last poll; a watch that ended answers its error once, then is gone. */
  events(sandboxId: string, id: string): { name: string; type: EventType }[] {
    const w = this.get(sandboxId, id);
    const out = w.events.splice(0);
    if (out.length === 0 && w.failed) {
      this.remove(sandboxId, id);
      throw w.failed;
    }
    w.idle.refresh();
    return out;
  }

  remove(sandboxId: string, id: string): void {
    const w = this.get(sandboxId, id);
    clearTimeout(w.idle);
    w.abort.abort();
    this.watchers.delete(id);
  }

  private get(sandboxId: string, id: string): Watcher {
    const w = this.watchers.get(id);
    if (!w || w.sandboxId !== sandboxId) throw new ConnectError(`watcher ${JSON.stringify(id)} not found`, Code.NotFound);
    return w;
  }

  private idleTimer(id: string): NodeJS.Timeout {
    const t = setTimeout(() => {
      const w = this.watchers.get(id);
      if (w) this.remove(w.sandboxId, id);
    }, IDLE_MS);
    t.unref();
    return t;
  }
}
