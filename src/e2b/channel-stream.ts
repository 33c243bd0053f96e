// A ProcessChannel as an async stream of envd process events, for Connect server streaming
// (the Connect twin of src/edge/ws/exec.ts's reader): lossless, pulled at the pace the response
// is written, stdout/stderr chunks coalesced into events of at most 64 KiB, a keepalive after each
// quiet interval, one `end` last. Attach happens at construction, so nothing produced between the
// start of the command and the first pull is lost.
import type { ProcessChannel, Stream, Subscription } from '../actors/process-channel.ts';
import type { ProcessExit } from '../actors/types.ts';

export type ChannelItem =
  | { kind: 'data'; stream: Stream; bytes: Uint8Array }
  | { kind: 'keepalive' }
  | { kind: 'end'; exit: ProcessExit };

type Queued = { kind: 'data'; stream: Stream; chunks: Buffer[]; len: number } | { kind: 'end'; exit: ProcessExit };

const MAX_EVENT = 64 * 1024;
const HIGH_WATER = 1024 * 1024;

export class ChannelStream {
  private readonly queue: Queued[] = [];
  private queued = 0;
  private blocked = false;
  private wake: (() => void) | null = null;
  private readonly sub: Subscription;

  constructor(channel: ProcessChannel, from?: number) {
    this.sub = channel.attach(
      {
        ready: () => {
          if (this.queued < HIGH_WATER) return true;
          this.blocked = true;
          return false;
        },
        data: (stream, chunk) => {
          const last = this.queue[this.queue.length - 1];
          if (last?.kind === 'data' && last.stream === stream && last.len + chunk.length <= MAX_EVENT) {
            last.chunks.push(chunk);
            last.len += chunk.length;
          } else {
            this.queue.push({ kind: 'data', stream, chunks: [chunk], len: chunk.length });
          }
          this.queued += chunk.length;
          this.notify();
        },
        dropped: () => undefined,
        exit: (exit) => {
          this.queue.push({ kind: 'end', exit });
          this.notify();
        },
      },
      { from },
    );
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Items until the end (inclusive), or until `signal` aborts (the client left: detach only). */
  async *items(signal: AbortSignal, keepaliveMs: number): AsyncGenerator<ChannelItem> {
    const onAbort = () => this.notify();
    signal.addEventListener('abort', onAbort);
    try {
      this.sub.pump();
      for (;;) {
        if (signal.aborted) return;
        const item = this.queue.shift();
        if (item?.kind === 'end') {
          yield item;
          return;
        }
        if (item) {
          this.queued -= item.len;
          if (this.blocked && this.queued < HIGH_WATER / 2) {
            this.blocked = false;
            this.sub.pump();
          }
          yield { kind: 'data', stream: item.stream, bytes: item.chunks.length === 1 ? item.chunks[0]! : Buffer.concat(item.chunks) };
          continue;
        }
        const quiet = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => {
            this.wake = null;
            resolve(true);
          }, keepaliveMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve(false);
          };
        });
        if (quiet && !signal.aborted) yield { kind: 'keepalive' };
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.close();
    }
  }

  close(): void {
    this.sub.detach();
    this.notify();
  }
}
