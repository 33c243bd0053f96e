// One command run by the agent: its output as Readables under the agent's credit window (the agent
// sends a stream's next bytes only after we credit what the reader took), stdin as a Writable that
// waits for the agent's acknowledgements, signals to the command's process group, exit once.
import { constants } from 'node:os';
import { Readable, Writable } from 'node:stream';
import type { ExecExit, ExecProcess } from '../../../types.ts';
import { PayloadReader, PayloadWriter, decodeError, type Frame } from './codec.ts';
import type { AgentConnection } from './connection.ts';
import { fromErrorFrame, type AgentError } from './errors.ts';
import { CHUNK, T, WINDOW } from './protocol.ts';

const SIGNAL_NAMES = new Map<number, string>(Object.entries(constants.signals).map(([k, v]) => [v, k] as [number, string]));

/** Stdin bytes sent but not yet written into the command's stdin, before write() waits. */
const STDIN_IN_FLIGHT = 1 << 20;

/** A stream whose consumed bytes go back to the agent as CREDIT. */
class CreditedReadable extends Readable {
  private owed = 0;
  constructor(private readonly credit: (n: number) => void) {
    super({ highWaterMark: WINDOW });
  }
  deliver(chunk: Buffer): void {
    // a reader that went away must not stall the command: credit whatever nobody will read
    if (this.destroyed || this.readableEnded) return this.credit(chunk.length);
    if (this.push(chunk)) this.credit(chunk.length);
    else this.owed += chunk.length;
  }
  override _read(): void {
    if (this.owed) {
      const n = this.owed;
      this.owed = 0;
      this.credit(n);
    }
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this._read(); // hand back what was held for it
    cb(err);
  }
}

export class AgentProcess implements ExecProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable;
  readonly exited: Promise<ExecExit>;
  /** Resolves with the command's pid inside the sandbox once STARTED (or ATTACH's OK) arrived. */
  readonly started: Promise<number>;
  /** The last ERROR the agent sent about this command after it started (a bad signal, stdin closed). */
  lastError: AgentError | null = null;

  private readonly out: CreditedReadable;
  private readonly err: CreditedReadable;
  private inFlight = 0;
  private stdinWaiters: Array<() => void> = [];
  private settleExit!: (e: ExecExit) => void;
  private failExit!: (e: Error) => void;
  private settleStart!: (pid: number) => void;
  private failStart!: (e: Error) => void;
  private isStarted = false;
  private done = false;
  private pidValue: number | null = null;

  constructor(
    private readonly conn: AgentConnection,
    readonly id: number,
    readonly pty: boolean,
  ) {
    const credit = (stream: number) => (n: number) => {
      if (!this.done) this.conn.send(T.CREDIT, this.id, new PayloadWriter().u32(stream).u32(n).done());
    };
    this.out = new CreditedReadable(credit(0));
    this.err = new CreditedReadable(credit(1));
    this.stdout = this.out;
    this.stderr = this.err;
    if (pty) this.err.push(null); // one stream on a terminal
    this.stdin = new Writable({
      highWaterMark: CHUNK,
      write: (chunk: Buffer, _enc, cb) => this.writeStdin(chunk, cb),
      final: (cb) => {
        if (!this.done) this.conn.send(T.STDIN_CLOSE, this.id);
        cb();
      },
    });
    this.stdin.on('error', () => undefined); // writes after exit are dropped, never thrown
    this.exited = new Promise((res, rej) => ((this.settleExit = res), (this.failExit = rej)));
    this.started = new Promise((res, rej) => ((this.settleStart = res), (this.failStart = rej)));
    // marked handled: a caller that never awaits them must not crash the process on a lost agent
    this.exited.catch(() => undefined);
    this.started.catch(() => undefined);
    conn.register(id, { frame: (f) => this.frame(f), closed: (e) => this.lost(e) });
  }

  pid(): Promise<number | null> {
    return this.started.then(
      () => this.pidValue,
      () => null,
    );
  }

  /** A signal to the command's process group (with a terminal: to its foreground group). */
  kill(signal: NodeJS.Signals | number): void {
    const n = typeof signal === 'number' ? signal : constants.signals[signal];
    if (!n) throw new RangeError(`signal: unknown ${signal}`);
    if (!this.done) this.conn.send(T.SIGNAL, this.id, new PayloadWriter().u32(n).done());
  }

  resize(cols: number, rows: number): void {
    if (!this.pty) throw new RangeError('resize: the command has no terminal');
    for (const [k, v] of [['cols', cols], ['rows', rows]] as const) {
      if (!Number.isInteger(v) || v < 1 || v > 0xffff) throw new RangeError(`${k}: 1..65535`);
    }
    if (!this.done) this.conn.send(T.RESIZE, this.id, new PayloadWriter().u16(cols).u16(rows).done());
  }

  private writeStdin(chunk: Buffer, cb: (err?: Error | null) => void): void {
    if (this.done) return cb();
    for (let off = 0; off < chunk.length; off += CHUNK) this.conn.send(T.STDIN, this.id, chunk.subarray(off, off + CHUNK));
    this.inFlight += chunk.length;
    const go = () => {
      if (this.inFlight < STDIN_IN_FLIGHT || this.done) return void this.conn.drained().then(() => cb());
      this.stdinWaiters.push(go);
    };
    go();
  }

  private wakeStdin(): void {
    for (const w of this.stdinWaiters.splice(0)) w();
  }

  private frame(f: Frame): void {
    switch (f.type) {
      case T.STARTED:
      case T.OK: // the answer to ATTACH: u32 pid, u32 flags
        if (this.isStarted) return;
        this.isStarted = true;
        this.pidValue = new PayloadReader(f.payload).u32();
        this.settleStart(this.pidValue);
        return;
      case T.STDOUT:
        return this.out.deliver(f.payload);
      case T.STDERR:
        return this.err.deliver(f.payload);
      case T.STDIN_ACK:
        this.inFlight -= new PayloadReader(f.payload).u32();
        return this.wakeStdin();
      case T.EXIT: {
        const r = new PayloadReader(f.payload);
        const code = r.i32();
        const sig = r.i32();
        this.finish();
        this.settleExit(
          sig ? { exitCode: null, signal: SIGNAL_NAMES.get(sig) ?? `SIG${sig}` } : { exitCode: code, signal: null },
        );
        return;
      }
      case T.ERROR: {
        const e = decodeError(f.payload);
        const err = fromErrorFrame(e.errno, e.message);
        if (this.isStarted) {
          this.lastError = err;
          return;
        }
        this.finish();
        this.failStart(err);
        this.failExit(err);
        return;
      }
    }
  }

  private finish(): void {
    this.done = true;
    this.conn.unregister(this.id);
    this.out.push(null);
    if (!this.pty) this.err.push(null);
    this.wakeStdin();
  }

  private lost(err: AgentError): void {
    if (this.done) return;
    this.finish();
    this.failStart(err);
    this.failExit(err);
  }
}
