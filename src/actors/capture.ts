// The buffered exec's capture of one stream (see process-channel.ts): one contiguous buffer, filled
// in place, handed over without a copy and released after the exit.

const FIRST = 64 * 1024;

/** A capped, contiguous copy of one stream. */
export class Capture {
  private buf: Buffer | null = null;
  length = 0;
  released = false;

  constructor(private readonly limit: number) {}

  append(chunk: Buffer): void {
    const need = this.length + chunk.length;
    if (!this.buf || need > this.buf.length) {
      // Grown 4x at a time, never past the cap: the copies left behind are at most a third of
      // what is kept; not allocated at the cap up front, since a helper's cap (64 MiB) would then
      // count as external memory on every stat and make V8 collect far more often.
      const size = Math.min(Math.max(FIRST, need, 4 * (this.buf?.length ?? 0)), Math.max(need, this.limit));
      const grown = Buffer.allocUnsafe(size);
      this.buf?.copy(grown, 0, 0, this.length);
      this.buf = grown;
    }
    chunk.copy(this.buf, this.length);
    this.length = need;
  }

  bytes(): Buffer {
    return this.buf ? this.buf.subarray(0, this.length) : Buffer.alloc(0);
  }

  release(): void {
    this.buf = null;
    this.released = true;
  }
}
