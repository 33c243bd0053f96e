// One streaming command over the gateway's exec WebSocket (protocol: src/edge/ws/exec.ts).
// Output goes to the callbacks if given, otherwise to the async iterator; an iterator that is not
// read fast enough pauses the socket, so the gateway (and then the command) is held back rather
// than this process buffering without bound.
import { WebSocket, type RawData } from 'ws';
import {
  EXEC_WS_PROTOCOL,
  TAG_STDOUT,
  type AttachMessage,
  type ExitInfo,
  type ServerMessage,
  type StartMessage,
} from '../protocol/exec-ws.ts';
import { CoppiceApiError, ConnectionError, errorFromBody } from './errors.ts';

export type { ExitInfo };

// Output bytes are typed Uint8Array so the package's types need no @types/node; on Node they are
// Buffers (a Uint8Array subclass): `Buffer.from(data.buffer, data.byteOffset, data.length)` is free.
export interface OutputChunk {
  stream: 'stdout' | 'stderr';
  data: Uint8Array;
}

export interface StreamCallbacks {
  onStdout?: (data: Uint8Array) => void;
  onStderr?: (data: Uint8Array) => void;
  /** Bytes the gateway no longer had (re-attach after its replay buffer moved on). */
  onDropped?: (bytes: number, at: number) => void;
  /** The gateway rejected a control message (stdin after close, unknown signal, ...). */
  onError?: (err: CoppiceApiError) => void;
}

export interface ExitResult extends ExitInfo {
  processID: string;
  outputBytes: number;
}

/** Iterator queue above which the socket is paused (and below a quarter of which it resumes). */
const QUEUE_HIGH = 1024 * 1024;

export class ExecStream implements AsyncIterable<OutputChunk> {
  /** Set once the gateway has answered started/attached. */
  processID: string | undefined;
  /** Output bytes received so far: pass it as `from` to re-attach without duplicates. */
  offset = 0;
  /** On attach: whether the command was still running, and the output it had produced by then. */
  attached: { running: boolean; outputBytes: number } | undefined;
  /** Resolves with the processID once the command is started (or attached). */
  readonly ready: Promise<string>;
  /** Resolves with the exit; rejects with a typed error if refused, or ConnectionError if cut off. */
  readonly exited: Promise<ExitResult>;

  private readonly ws: WebSocket;
  private readonly cb: StreamCallbacks;
  private readonly useQueue: boolean;
  private readonly outbox: { m: string | Buffer; done?: () => void }[] = [];
  private queue: OutputChunk[] = [];
  private queued = 0;
  private wake: (() => void) | null = null;
  private result: ExitResult | null = null;
  private failure: Error | null = null;
  private refusal: CoppiceApiError | null = null;
  private pausedByQueue = false;
  private resolveReady!: (id: string) => void;
  private rejectReady!: (e: Error) => void;
  private resolveExit!: (r: ExitResult) => void;
  private rejectExit!: (e: Error) => void;

  constructor(wsUrl: string, apiKey: string, first: StartMessage | AttachMessage, callbacks: StreamCallbacks = {}) {
    this.cb = callbacks;
    this.useQueue = !callbacks.onStdout && !callbacks.onStderr;
    this.ready = new Promise((res, rej) => ((this.resolveReady = res), (this.rejectReady = rej)));
    this.exited = new Promise((res, rej) => ((this.resolveExit = res), (this.rejectExit = rej)));
    // Unobserved rejections are the caller's choice, not a crash.
    this.ready.catch(() => undefined);
    this.exited.catch(() => undefined);
    if (first.type === 'attach' && first.from !== undefined) this.offset = first.from;

    this.ws = new WebSocket(wsUrl, [EXEC_WS_PROTOCOL], { headers: { authorization: `Bearer ${apiKey}` }, perMessageDeflate: false });
    this.ws.on('open', () => {
      this.ws.send(JSON.stringify(first));
      for (const { m, done } of this.outbox.splice(0)) this.ws.send(m, done);
    });
    this.ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    this.ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = { message: text || `HTTP ${res.statusCode}` };
        }
        this.fail(errorFromBody(res.statusCode ?? 500, body));
        this.ws.terminate();
      });
    });
    this.ws.on('error', (err) => this.fail(new ConnectionError(`exec stream: ${err.message}`, { cause: err })));
    this.ws.on('close', (code, reason) => {
      if (this.result) return;
      if (this.refusal) return this.fail(this.refusal);
      this.fail(new ConnectionError(`exec stream closed before the exit (code ${code}${reason.length ? `: ${reason}` : ''})`));
    });
  }

  /**
   * Send stdin bytes (the command must have been started with `stdin: true`). `flushed` runs once
   * the bytes are handed to the socket: wait for it before writing more to bound local buffering.
   */
  write(data: string | Uint8Array, flushed?: () => void): void {
    this.post(typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data), flushed);
  }

  closeStdin(): void {
    this.post(JSON.stringify({ type: 'close_stdin' }));
  }

  signal(signal = 'SIGINT'): void {
    this.post(JSON.stringify({ type: 'signal', signal }));
  }

  kill(): void {
    this.signal('SIGKILL');
  }

  /** Stop taking output (the gateway, then the command, is held back); `resume()` continues. */
  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    if (!this.pausedByQueue) this.ws.resume();
  }

  /** Leave without killing the command; re-attach later with its processID and `offset`. */
  detach(): void {
    this.fail(new ConnectionError('detached'));
    this.ws.close(1000, 'detach');
  }

  async *[Symbol.asyncIterator](): AsyncIterator<OutputChunk> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        this.queued -= next.data.length;
        if (this.pausedByQueue && this.queued < QUEUE_HIGH / 4) {
          this.pausedByQueue = false;
          this.ws.resume();
        }
        yield next;
        continue;
      }
      if (this.result) return;
      if (this.failure) throw this.failure;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  private post(m: string | Buffer, flushed?: () => void): void {
    const done = flushed ? () => flushed() : undefined;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(m, done);
    else if (this.ws.readyState === WebSocket.CONNECTING) this.outbox.push({ m, done });
    else done?.();
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (isBinary) {
      const chunk = buf.subarray(1);
      const stream = buf[0] === TAG_STDOUT ? 'stdout' : 'stderr';
      this.offset += chunk.length;
      if (stream === 'stdout') this.cb.onStdout?.(chunk);
      else this.cb.onStderr?.(chunk);
      if (this.useQueue) {
        this.queue.push({ stream, data: chunk });
        this.queued += chunk.length;
        if (!this.pausedByQueue && this.queued > QUEUE_HIGH) {
          this.pausedByQueue = true;
          this.ws.pause();
        }
        this.poke();
      }
      return;
    }
    let msg: ServerMessage;
    try {
      msg = JSON.parse(buf.toString('utf8')) as ServerMessage;
    } catch {
      return;
    }
    switch (msg.type) {
      case 'started':
        this.processID = msg.processID;
        this.resolveReady(msg.processID);
        break;
      case 'attached':
        this.processID = msg.processID;
        this.offset = msg.from;
        this.attached = { running: msg.running, outputBytes: msg.outputBytes };
        if (msg.dropped > 0) this.cb.onDropped?.(msg.dropped, msg.from - msg.dropped);
        this.resolveReady(msg.processID);
        break;
      case 'dropped':
        this.offset = msg.at + msg.bytes;
        this.cb.onDropped?.(msg.bytes, msg.at);
        break;
      case 'exit': {
        const { type: _t, ...exit } = msg;
        this.result = { processID: this.processID ?? '', ...exit };
        this.resolveExit(this.result);
        this.poke();
        break;
      }
      case 'error': {
        const err = errorFromBody(msg.code, msg);
        // Before started/attached an error is a refusal (the close follows); after, a rejected control message.
        if (this.processID === undefined) this.refusal = err;
        else this.cb.onError?.(err);
        break;
      }
    }
  }

  private fail(err: Error): void {
    if (this.result || this.failure) return;
    this.failure = err;
    this.rejectReady(err);
    this.rejectExit(err);
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}
