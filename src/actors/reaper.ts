// One timer for every sandbox's endAt. XState's scheduler keeps all delayed events of a system in
// one map and scans it whenever any actor stops, so a per-sandbox `after` timer makes creating N
// sandboxes O(N^2). Here: a min-heap of deadlines and a single setTimeout for the earliest.
import type { AnyActorRef } from 'xstate';

/** setTimeout's ceiling; later deadlines re-arm when it fires. */
const MAX_TIMER_MS = 2_147_483_647;

interface Entry {
  at: number;
  ref: AnyActorRef;
}

export class Reaper {
  /** The live deadline per actor; heap entries that disagree with it are stale and skipped. */
  private readonly due = new Map<AnyActorRef, number>();
  private readonly heap: Entry[] = [];
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;

  constructor(private readonly now: () => number = Date.now) {}

  /** Send `{type:'EXPIRE'}` to `ref` at `at` (replacing any earlier schedule for it). */
  schedule(ref: AnyActorRef, at: number): void {
    this.due.set(ref, at);
    this.push({ at, ref });
    if (at < this.timerAt) this.arm();
  }

  cancel(ref: AnyActorRef): void {
    this.due.delete(ref);
    // Entries stay in the heap and are dropped when they surface; compact if they pile up.
    if (this.heap.length > 1024 && this.heap.length > 4 * this.due.size) this.compact();
  }

  get size(): number {
    return this.due.size;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    this.due.clear();
    this.heap.length = 0;
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    this.dropStale();
    const top = this.heap[0];
    if (!top) return;
    this.timerAt = top.at;
    this.timer = setTimeout(() => this.fire(), Math.min(MAX_TIMER_MS, Math.max(0, top.at - this.now())));
    // The reaper alone never keeps the process alive.
    this.timer.unref?.();
  }

  private fire(): void {
    this.timer = null;
    this.timerAt = Infinity;
    const now = this.now();
    while (this.heap.length > 0 && this.heap[0]!.at <= now) {
      const e = this.pop()!;
      if (this.due.get(e.ref) !== e.at) continue;
      this.due.delete(e.ref);
      e.ref.send({ type: 'EXPIRE' });
    }
    this.arm();
  }

  private dropStale(): void {
    while (this.heap.length > 0 && this.due.get(this.heap[0]!.ref) !== this.heap[0]!.at) this.pop();
  }

  private compact(): void {
    const live = this.heap.filter((e) => this.due.get(e.ref) === e.at);
    this.heap.length = 0;
    for (const e of live) this.push(e);
  }

  private push(e: Entry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.at <= h[i]!.at) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  private pop(): Entry | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]!.at < h[m]!.at) m = l;
        if (r < h.length && h[r]!.at < h[m]!.at) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}
