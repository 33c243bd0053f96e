// The per-sandbox process table: every command started on a sandbox (streaming or buffered), so a
// client can list them, re-attach to a running one by id, and still collect the exit of one that
// finished while it was away.
//
// Running commands are process actors under their sandbox actor (`process:<sandboxId>:<processId>`);
// the table holds their ProcessChannel (bytes + exit) and their actor ref (for stdin and signals).
// Retention policy for finished commands:
//   - an exit is kept `retainMs` (default 10 min) after the command ended;
//   - at most `maxFinishedPerSandbox` (default 32) finished commands per sandbox, oldest forgotten first;
//   - the replay buffers of finished commands together stay under `retainedOutputBudget` (default
//     64 MiB): past it, the oldest finished commands lose their output (the exit is kept, and a
//     re-attach is told how many bytes were dropped);
//   - entries of a sandbox that no longer exists are dropped at the next sweep.
import type { AnyActorRef } from 'xstate';
import type { ProcessOutput } from '../../machines/process.ts';
import type { ProcessExit } from '../../machines/types.ts';
import type { ProcessChannel } from './process-channel.ts';

import type { ProcessKind, ProcessView } from '../protocol/views.ts';

export interface ProcessEntry {
  sandboxId: string;
  processId: string;
  kind: ProcessKind;
  channel: ProcessChannel;
  /** The process actor while it runs. */
  ref: AnyActorRef | undefined;
  /** The command's stdin is still open to clients. */
  stdinOpen: boolean;
}

export type { ProcessView, ProcessKind };

export interface ProcessTableOptions {
  retainMs?: number;
  maxFinishedPerSandbox?: number;
  retainedOutputBudget?: number;
  sweepMs?: number;
  /** Whether a sandbox still exists (entries of gone sandboxes are swept). */
  isLive: (sandboxId: string) => boolean;
}

export class ProcessTable {
  private readonly bySandbox = new Map<string, Map<string, ProcessEntry>>();
  private readonly retainMs: number;
  private readonly maxFinished: number;
  private readonly budget: number;
  private readonly isLive: (id: string) => boolean;
  private readonly timer: NodeJS.Timeout;
  /** Finished entries in the order they ended (for the output budget) and their retained bytes. */
  private readonly finishedOrder = new Map<ProcessEntry, number>();
  private finishedBytes = 0;

  constructor(opts: ProcessTableOptions) {
    this.retainMs = opts.retainMs ?? 10 * 60_000;
    this.maxFinished = opts.maxFinishedPerSandbox ?? 32;
    this.budget = opts.retainedOutputBudget ?? 64 * 1024 * 1024;
    this.isLive = opts.isLive;
    this.timer = setInterval(() => this.sweep(), opts.sweepMs ?? 15_000);
    this.timer.unref();
  }

  add(sandboxId: string, channel: ProcessChannel, ref: AnyActorRef | undefined, opts: { kind: ProcessKind; stdinOpen: boolean }): ProcessEntry {
    const entry: ProcessEntry = { sandboxId, processId: channel.processId, kind: opts.kind, channel, ref, stdinOpen: opts.stdinOpen };
    let procs = this.bySandbox.get(sandboxId);
    if (!procs) this.bySandbox.set(sandboxId, (procs = new Map()));
    procs.set(channel.processId, entry);
    // The actor's output is the authority on the exit: it covers a command that could not be
    // reaped (killed at its deadline while frozen), whose runner never reports.
    if (ref) {
      const sub = ref.subscribe({
        complete: () => {
          const out = (ref.getSnapshot() as { output?: ProcessOutput }).output;
          if (out) channel.finish(out.exit);
          queueMicrotask(() => sub.unsubscribe());
        },
        error: () => undefined,
      });
    }
    void channel.exited.then(() => {
      entry.ref = undefined;
      entry.stdinOpen = false;
      if (this.get(sandboxId, entry.processId) !== entry) return;
      const bytes = channel.stats().retainedBytes;
      this.finishedOrder.set(entry, bytes);
      this.finishedBytes += bytes;
      this.enforce(sandboxId);
    });
    return entry;
  }

  get(sandboxId: string, processId: string): ProcessEntry | undefined {
    return this.bySandbox.get(sandboxId)?.get(processId);
  }

  list(sandboxId: string): ProcessEntry[] {
    return [...(this.bySandbox.get(sandboxId)?.values() ?? [])];
  }

  /** Running commands' bytes held in replay buffers, and finished ones', for metrics and tests. */
  retained(): { running: number; finished: number } {
    let running = 0;
    let finished = 0;
    for (const procs of this.bySandbox.values()) {
      for (const e of procs.values()) {
        const b = e.channel.stats().retainedBytes;
        if (e.channel.exit) finished += b;
        else running += b;
      }
    }
    return { running, finished };
  }

  dropSandbox(sandboxId: string): void {
    for (const e of this.bySandbox.get(sandboxId)?.values() ?? []) this.forgetFinished(e);
    this.bySandbox.delete(sandboxId);
  }

  private remove(e: ProcessEntry): void {
    this.bySandbox.get(e.sandboxId)?.delete(e.processId);
    this.forgetFinished(e);
  }

  private forgetFinished(e: ProcessEntry): void {
    const bytes = this.finishedOrder.get(e);
    if (bytes === undefined) return;
    this.finishedOrder.delete(e);
    this.finishedBytes -= bytes;
  }

  close(): void {
    clearInterval(this.timer);
  }

  sweep(now = Date.now()): void {
    for (const [sid, procs] of [...this.bySandbox]) {
      const live = this.isLive(sid);
      for (const e of procs.values()) {
        const ended = e.channel.endedAt;
        if (ended !== null && (!live || now - ended >= this.retainMs)) this.remove(e);
      }
      if (procs.size === 0 && !live) this.bySandbox.delete(sid);
    }
    this.enforceBudget();
  }

  private enforce(sandboxId: string): void {
    const procs = this.bySandbox.get(sandboxId);
    if (procs) {
      const finished = [...procs.values()].filter((e) => e.channel.endedAt !== null);
      finished.sort((a, b) => a.channel.endedAt! - b.channel.endedAt!);
      for (let i = 0; i < finished.length - this.maxFinished; i++) this.remove(finished[i]!);
    }
    this.enforceBudget();
  }

  /** Oldest finished first lose their output until the total is within budget. */
  private enforceBudget(): void {
    for (const [e, bytes] of this.finishedOrder) {
      if (this.finishedBytes <= this.budget) break;
      // A client still reading it keeps it; its bytes are released later.
      if (bytes === 0 || e.channel.readerCount > 0) continue;
      e.channel.releaseReplay();
      this.finishedOrder.set(e, 0);
      this.finishedBytes -= bytes;
    }
  }

  view(e: ProcessEntry): ProcessView {
    const s = e.channel.stats();
    return {
      processID: e.processId,
      kind: e.kind,
      argv: e.channel.argv,
      state: e.channel.exit ? 'exited' : 'running',
      startedAt: new Date(e.channel.startedAt).toISOString(),
      endedAt: e.channel.endedAt === null ? null : new Date(e.channel.endedAt).toISOString(),
      exit: e.channel.exit,
      outputBytes: s.outputBytes,
      retainedFrom: s.retainedFrom,
      clients: s.readers,
      stdinOpen: e.stdinOpen,
    };
  }
}
