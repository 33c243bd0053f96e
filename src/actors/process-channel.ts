// Where a command's bytes go. The process actor's runner writes into it; readers (the buffered
// REST exec, WebSocket clients) read from it.
//
// Offsets. Output is one ordered byte sequence (stdout and stderr interleaved as they were read);
// offset N is the N-th byte of it. A reader's cursor is such an offset, so a client that re-attaches
// with the offset it has reached gets exactly the bytes it has not seen.
//
// Replay buffer (policy). The channel keeps the LAST `replayLimit` bytes of output (plus the bytes
// an attached lossless reader has not consumed yet, see below). Older bytes are dropped; a reader
// asking for them is told how many were dropped and continues from the oldest byte still kept.
//
// Backpressure (policy). Readers pull; the channel never pushes into a reader that says it is not
// `ready()` (a WebSocket over its high-water mark). A lossless reader that falls `window` bytes
// behind the newest byte pauses the SOURCE (the runc exec stdout/stderr pipes), so the command
// blocks on write exactly as it would on a full pipe; the source resumes once every lossless reader
// is within window/2. So with several attached clients the command runs at the pace of the slowest
// lossless one, and none loses a byte. A `lossy` reader never holds the source: if it falls behind
// the replay buffer it skips ahead and is told how many bytes it missed.
// Unread (no reader attached, nothing captured: a detached command): once a full replay buffer of
// output has come since the last reader left, the source is paused and let through only a slice
// per tick, so the command still moves on, the ring keeps its newest tail, and the gateway stops
// spending a core on bytes nobody reads (cat /dev/zero took ~1.1 cores). A reader attaching
// lifts it at once.
// Bound per process: replayLimit + window (one extra chunk at most) here, plus each reader's own
// buffer (a WebSocket's high-water mark), plus the pipes' own 64 KiB.
//
// Buffered capture (REST /exec) is a separate capped copy that is never paused. It is one
// contiguous buffer per stream (output() hands it over without a copy) and is released once
// handed over after the exit, not kept for the process table's retention.
import type { ProcessExit } from '../../machines/types.ts';
import { Capture } from './capture.ts';

export type Stream = 'stdout' | 'stderr';

/** A pulling consumer (a WebSocket client). */
export interface Reader {
  /** May it take more bytes now? Readers that answer false must call `pump()` once they can. */
  ready(): boolean;
  data(stream: Stream, chunk: Buffer): void;
  /** Bytes in [at, at + bytes) were dropped before this reader could get them. */
  dropped(bytes: number, at: number): void;
  /** Called once, after every byte up to `outputBytes` has been handed to `data`. */
  exit(exit: ProcessExit, outputBytes: number): void;
}

export interface Subscription {
  /** Offset of the first byte this reader will get. */
  readonly from: number;
  /** Bytes the reader asked for that were no longer kept. */
  readonly dropped: number;
  /** Offset reached so far. */
  readonly position: number;
  /** The reader has room again. */
  pump(): void;
  detach(): void;
}

export interface Source {
  pause(): void;
  resume(): void;
}

export interface StdinGauge {
  /** Bytes accepted for stdin but not yet written to the command. */
  backlog(): number;
  onceDrained(cb: () => void): void;
}

export interface ChannelOptions {
  /** Bytes kept for a buffered reader; 0 keeps nothing. */
  captureLimit?: number;
  /** Bytes of recent output kept for (re-)attaching readers. */
  replayLimit?: number;
  /** How far a lossless reader may fall behind before the source is paused (default: replayLimit, at least 64 KiB). */
  window?: number;
}

export interface ChannelStats {
  outputBytes: number;
  retainedFrom: number;
  retainedBytes: number;
  readers: number;
  sourcePaused: boolean;
  /** How many times backpressure paused the source. */
  pauses: number;
  droppedBytes: number;
}

interface Chunk {
  stream: Stream;
  offset: number;
  buf: Buffer;
}

interface Cursor {
  reader: Reader;
  pos: number;
  lossy: boolean;
  pumping: boolean;
  done: boolean;
}

/** Per-chunk bookkeeping counted against the replay limit, so a flood of 1-byte writes stays bounded. */
const CHUNK_OVERHEAD = 64;
/** What an evicted slot of the ring holds until the array is compacted. */
const EVICTED: Chunk = { stream: 'stdout', offset: -1, buf: Buffer.alloc(0) };
export const DEFAULT_REPLAY_LIMIT = 4 * 1024 * 1024;
/** An unread command's pace: this many bytes per tick (~1.3 MB/s), once its ring has been refilled. */
export const UNREAD_SLICE = 64 * 1024;
export const UNREAD_TICK_MS = 50;

export class ProcessChannel {
  readonly startedAt = Date.now();
  endedAt: number | null = null;
  private readonly captureLimit: number;
  private readonly replayLimit: number;
  private readonly window: number;
  private readonly captured: Record<Stream, Capture>;
  private capturedBytes = 0;
  private truncatedFlag = false;
  private readonly cursors = new Set<Cursor>();
  // Replay ring: chunks[first..] are live; `first` advances on eviction, compacted now and then.
  private chunks: Chunk[] = [];
  private first = 0;
  private head = 0;
  private tail = 0;
  private retainedCost = 0;
  private droppedTotal = 0;
  private source: Source | null = null;
  private sourcePaused = false;
  private pauseCount = 0;
  /** Paused because nobody reads (see the file comment), as opposed to a lagging reader. */
  private unreadPaused = false;
  /** Bytes an unread command may still write before the next pause. */
  private unreadAllowance: number;
  private unreadTimer: NodeJS.Timeout | undefined;
  private stdin: StdinGauge | null = null;
  private pidSource: (() => Promise<number | null>) | null = null;
  private pidValue: Promise<number | null> | null = null;
  private knownPid: number | null | undefined = undefined;
  private exitValue: ProcessExit | null = null;
  private resolveExit!: (exit: ProcessExit) => void;
  readonly exited: Promise<ProcessExit> = new Promise((r) => (this.resolveExit = r));

  constructor(
    readonly processId: string,
    readonly argv: string[],
    opts: ChannelOptions | number = {},
  ) {
    const o = typeof opts === 'number' ? { captureLimit: opts } : opts;
    this.captureLimit = o.captureLimit ?? 0;
    this.replayLimit = o.replayLimit ?? DEFAULT_REPLAY_LIMIT;
    this.window = o.window ?? Math.max(this.replayLimit, 64 * 1024);
    this.unreadAllowance = this.replayLimit;
    this.captured = { stdout: new Capture(this.captureLimit), stderr: new Capture(this.captureLimit) };
  }

  // ---- writer side (the runner) ----

  /** The runner hands over its output pipes so readers can hold them back. */
  setSource(source: Source): void {
    this.source = source;
    if (this.sourcePaused || this.unreadPaused) source.pause();
  }

  setStdin(gauge: StdinGauge): void {
    this.stdin = gauge;
  }

  /** How to learn the command's PID inside the sandbox (asked lazily, at most once). */
  setPidSource(source: () => Promise<number | null>): void {
    this.pidSource = source;
  }

  write(stream: Stream, chunk: Buffer): void {
    if (this.exitValue || chunk.length === 0) return;
    if (this.capturedBytes < this.captureLimit) {
      const room = this.captureLimit - this.capturedBytes;
      const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
      this.captured[stream].append(part);
      this.capturedBytes += part.length;
      if (part.length < chunk.length) this.truncatedFlag = true;
    } else if (this.captureLimit > 0) {
      this.truncatedFlag = true;
    }
    this.chunks.push({ stream, offset: this.head, buf: chunk });
    this.head += chunk.length;
    this.retainedCost += chunk.length + CHUNK_OVERHEAD;
    if (this.unread()) this.unreadAllowance -= chunk.length;
    for (const c of this.cursors) this.pumpCursor(c);
    this.evict();
    this.regulate();
  }

  /** Called once by the runner (or the process table, from the actor's output); later calls are ignored. */
  finish(exit: ProcessExit): void {
    if (this.exitValue) return;
    this.exitValue = exit;
    this.endedAt = Date.now();
    clearTimeout(this.unreadTimer);
    // Whatever is still in the pipes has nowhere to go now; let them drain so the runner can end.
    if (this.sourcePaused || this.unreadPaused) {
      this.sourcePaused = false;
      this.unreadPaused = false;
      this.source?.resume();
    }
    for (const c of [...this.cursors]) this.pumpCursor(c);
    this.resolveExit(exit);
  }

  // ---- reader side ----

  get exit(): ProcessExit | null {
    return this.exitValue;
  }

  /** The command's PID inside the sandbox; null when the backend cannot tell (or it was gone first). */
  pid(): Promise<number | null> {
    this.pidValue ??= (this.pidSource?.() ?? Promise.resolve(null)).then(
      (p) => (this.knownPid = p),
      () => (this.knownPid = null),
    );
    return this.pidValue;
  }

  /** pid() once it has settled (undefined before). */
  get resolvedPid(): number | null | undefined {
    return this.knownPid;
  }

  get truncated(): boolean {
    return this.truncatedFlag;
  }

  get outputBytes(): number {
    return this.head;
  }

  /**
   * The captured bytes of one stream (no copy). After the exit this hands them over: the channel
   * lets go of them (a finished command's entry outlives its reply by minutes), so a second call
   * returns nothing.
   */
  output(stream: Stream): Buffer {
    const c = this.captured[stream];
    const bytes = c.bytes();
    if (this.exitValue) c.release();
    return bytes;
  }

  /**
   * Attach a pulling reader from offset `from` (default: the oldest byte kept). Offsets beyond the
   * output produced so far are a caller error (RangeError). Nothing is delivered until the first
   * `pump()`, so the caller can announce the subscription (from, dropped) before any byte.
   */
  attach(reader: Reader, opts: { from?: number; lossy?: boolean } = {}): Subscription {
    const want = opts.from ?? this.tail;
    if (!Number.isInteger(want) || want < 0 || want > this.head) {
      throw new RangeError(`offset ${want} is outside the output produced so far (0..${this.head})`);
    }
    const start = Math.max(want, this.tail);
    const cursor: Cursor = { reader, pos: start, lossy: opts.lossy ?? false, pumping: false, done: false };
    this.cursors.add(cursor);
    const dropped = start - want;
    const self = this;
    const sub: Subscription = {
      from: start,
      dropped,
      get position() {
        return cursor.pos;
      },
      pump: () => {
        if (cursor.done) return;
        self.pumpCursor(cursor);
        self.evict();
        self.regulate();
      },
      detach: () => {
        if (!self.cursors.delete(cursor)) return;
        cursor.done = true;
        self.evict();
        self.regulate();
      },
    };
    return sub;
  }

  /** Stdin bytes not yet taken by the command (0 when unknown). */
  stdinBacklog(): number {
    return this.stdin?.backlog() ?? 0;
  }

  onceStdinDrained(cb: () => void): void {
    if (!this.stdin || this.stdin.backlog() === 0) return void queueMicrotask(cb);
    this.stdin.onceDrained(cb);
  }

  /** Forget the replay buffer of a finished command with no reader (retention budget). */
  releaseReplay(): number {
    if (!this.exitValue || this.cursors.size > 0) return 0;
    const freed = this.head - this.tail;
    this.droppedTotal += freed;
    this.chunks = [];
    this.first = 0;
    this.tail = this.head;
    this.retainedCost = 0;
    return freed;
  }

  stats(): ChannelStats {
    return {
      outputBytes: this.head,
      retainedFrom: this.tail,
      retainedBytes: this.head - this.tail,
      readers: this.cursors.size,
      sourcePaused: this.sourcePaused,
      pauses: this.pauseCount,
      droppedBytes: this.droppedTotal,
    };
  }

  get readerCount(): number {
    return this.cursors.size;
  }

  // ---- internals ----

  private pumpCursor(c: Cursor): void {
    if (c.pumping || c.done) return;
    c.pumping = true;
    try {
      while (c.pos < this.head && c.reader.ready()) {
        const chunk = this.chunkAt(c.pos);
        const part = chunk.buf.subarray(c.pos - chunk.offset);
        c.pos += part.length;
        c.reader.data(chunk.stream, part);
        if (c.done) return;
      }
      if (c.pos === this.head && this.exitValue && !c.done) {
        c.done = true;
        this.cursors.delete(c);
        c.reader.exit(this.exitValue, this.head);
      }
    } finally {
      c.pumping = false;
    }
  }

  /** The live chunk holding offset `pos` (binary search; tail <= pos < head). */
  private chunkAt(pos: number): Chunk {
    let lo = this.first;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunks[mid]!.offset <= pos) lo = mid;
      else hi = mid - 1;
    }
    return this.chunks[lo]!;
  }

  private slowestLossless(): number {
    let min = Infinity;
    for (const c of this.cursors) if (!c.lossy && c.pos < min) min = c.pos;
    return min;
  }

  private evict(): void {
    if (this.retainedCost <= this.replayLimit) return;
    const keepFrom = this.slowestLossless();
    while (this.retainedCost > this.replayLimit && this.first < this.chunks.length) {
      const c = this.chunks[this.first]!;
      const end = c.offset + c.buf.length;
      if (end > keepFrom) break;
      // Let go of the bytes now, not at the next compaction: up to 1024 evicted chunks (64 MiB of
      // pipe reads) used to stay referenced, for the whole retention of a finished command.
      this.chunks[this.first] = EVICTED;
      this.first += 1;
      this.retainedCost -= c.buf.length + CHUNK_OVERHEAD;
      this.tail = end;
      this.droppedTotal += c.buf.length;
    }
    if (this.first > 1024 && this.first * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
    // Lossy readers the ring has overtaken skip ahead, and are told.
    for (const c of this.cursors) {
      if (c.lossy && c.pos < this.tail) {
        const missed = this.tail - c.pos;
        const at = c.pos;
        c.pos = this.tail;
        c.reader.dropped(missed, at);
      }
    }
  }

  private unread(): boolean {
    return this.cursors.size === 0 && this.captureLimit === 0;
  }

  private regulate(): void {
    if (!this.source || this.exitValue) return;
    const slowest = this.slowestLossless();
    const lag = slowest === Infinity ? 0 : this.head - slowest;
    if (!this.sourcePaused && lag >= this.window) {
      this.sourcePaused = true;
      this.pauseCount += 1;
      if (!this.unreadPaused) this.source.pause();
    } else if (this.sourcePaused && lag <= this.window / 2) {
      this.sourcePaused = false;
      if (!this.unreadPaused) this.source.resume();
    }
    this.regulateUnread();
  }

  private regulateUnread(): void {
    if (!this.unread()) {
      // Someone reads again: no pacing; a later detach gets a whole ring of fresh output first.
      this.unreadAllowance = this.replayLimit;
      clearTimeout(this.unreadTimer);
      this.unreadTimer = undefined;
      if (this.unreadPaused) {
        this.unreadPaused = false;
        if (!this.sourcePaused) this.source!.resume();
      }
      return;
    }
    if (this.unreadPaused || this.unreadAllowance > 0) return;
    this.unreadPaused = true;
    if (!this.sourcePaused) this.source!.pause();
    this.unreadTimer = setTimeout(() => {
      this.unreadTimer = undefined;
      if (!this.unreadPaused || this.exitValue) return;
      this.unreadAllowance = UNREAD_SLICE;
      this.unreadPaused = false;
      if (!this.sourcePaused) this.source?.resume();
    }, UNREAD_TICK_MS);
    this.unreadTimer.unref?.();
  }
}
