// Admission control for creates: at most `concurrent` run at once, at most `queue` wait their turn
// (FIFO); beyond that a create is refused at once with 429 and a Retry-After, instead of piling up.
import { tooManyRequests } from '../errors.ts';

export class Admission {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly concurrent: number,
    private readonly queue: number,
  ) {}

  get inFlight(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Run `fn` when a slot is free; refuse at once when the queue is full. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrent) {
      if (this.waiting.length >= this.queue) {
        throw tooManyRequests(`too many creates in flight (${this.running} running, ${this.waiting.length} queued)`, 1);
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running += 1;
    }
    try {
      return await fn();
    } finally {
      // Hand the slot straight to the next waiter (running stays the same), else free it.
      const next = this.waiting.shift();
      if (next) next();
      else this.running -= 1;
    }
  }
}
