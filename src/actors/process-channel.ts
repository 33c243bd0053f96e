// Where a command's bytes go. The process actor's runner writes into it; readers (the buffered
// REST exec, WebSocket clients) read from it. Buffered capture is capped so a chatty command
// cannot grow the gateway without bound.
import type { ProcessExit } from '../../machines/types.ts';

export type Stream = 'stdout' | 'stderr';

export interface ChannelListener {
  data(stream: Stream, chunk: Buffer): void;
  exit(exit: ProcessExit): void;
}

export class ProcessChannel {
  readonly startedAt = Date.now();
  private readonly captured: Record<Stream, Buffer[]> = { stdout: [], stderr: [] };
  private capturedBytes = 0;
  private truncatedFlag = false;
  private readonly listeners = new Set<ChannelListener>();
  private exitValue: ProcessExit | null = null;
  private resolveExit!: (exit: ProcessExit) => void;
  readonly exited: Promise<ProcessExit> = new Promise((r) => (this.resolveExit = r));

  constructor(
    readonly processId: string,
    readonly argv: string[],
    /** Bytes kept for a buffered reader; 0 keeps nothing. */
    private readonly captureLimit: number,
  ) {}

  write(stream: Stream, chunk: Buffer): void {
    if (this.exitValue) return;
    if (this.capturedBytes < this.captureLimit) {
      const room = this.captureLimit - this.capturedBytes;
      const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
      this.captured[stream].push(part);
      this.capturedBytes += part.length;
      if (part.length < chunk.length) this.truncatedFlag = true;
    } else if (this.captureLimit > 0) {
      this.truncatedFlag = true;
    }
    for (const l of this.listeners) l.data(stream, chunk);
  }

  /** Called once by the runner; later calls are ignored. */
  finish(exit: ProcessExit): void {
    if (this.exitValue) return;
    this.exitValue = exit;
    for (const l of this.listeners) l.exit(exit);
    this.listeners.clear();
    this.resolveExit(exit);
  }

  get exit(): ProcessExit | null {
    return this.exitValue;
  }

  get truncated(): boolean {
    return this.truncatedFlag;
  }

  output(stream: Stream): Buffer {
    return Buffer.concat(this.captured[stream]);
  }

  listen(l: ChannelListener): () => void {
    if (this.exitValue) {
      l.exit(this.exitValue);
      return () => {};
    }
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}
