// A small client for the streaming exec WebSocket (protocol in src/edge/ws/exec.ts): start or
// attach, collect stdout/stderr bytes and JSON messages, wait for the exit or the close.
import { WebSocket } from 'ws';
import { TAG_STDERR, TAG_STDOUT } from '../../src/protocol/exec-ws.ts';

export interface ExitMessage {
  type: 'exit';
  exitCode: number | null;
  signal: string | null;
  reason?: string;
  error?: { code: string; message: string };
  outputBytes: number;
}

export class ExecWsClient {
  readonly ws: WebSocket;
  readonly messages: Record<string, unknown>[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly exited: Promise<ExitMessage>;
  httpStatus: number | null = null;
  private readonly out: Buffer[] = [];
  private readonly err: Buffer[] = [];
  outBytes = 0;
  errBytes = 0;
  private onStarted: ((id: string) => void) | null = null;
  private onFail: ((e: Error) => void) | null = null;

  constructor(baseUrl: string, sandboxId: string, key: string, opts: { keep?: boolean } = {}) {
    const keep = opts.keep ?? true;
    this.ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/sandboxes/${sandboxId}/exec/ws`, { headers: { authorization: `Bearer ${key}` } });
    this.ws.on('error', () => undefined);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => {
        this.httpStatus = res.statusCode ?? null;
        res.resume();
        reject(new Error(`HTTP ${res.statusCode}`));
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => undefined);
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.exited = new Promise((resolve, reject) => {
      this.ws.on('message', (data: Buffer, isBinary) => {
        if (isBinary) {
          const payload = data.subarray(1);
          if (data[0] === TAG_STDOUT) {
            this.outBytes += payload.length;
            if (keep) this.out.push(payload);
          } else if (data[0] === TAG_STDERR) {
            this.errBytes += payload.length;
            if (keep) this.err.push(payload);
          }
          return;
        }
        const m = JSON.parse(data.toString()) as Record<string, unknown>;
        this.messages.push(m);
        if (m.type === 'started' || m.type === 'attached') this.onStarted?.(String(m.processID));
        if (m.type === 'exit') resolve(m as unknown as ExitMessage);
        if (m.type === 'error') this.onFail?.(new Error(`${m.code} ${m.message}`));
      });
      void this.closed.then(({ code, reason }) => reject(new Error(`closed (${code} ${reason}) without an exit message`)));
    });
    this.exited.catch(() => undefined);
  }

  /** Send start (or attach) and resolve with the processID once the server confirms. */
  async start(msg: Record<string, unknown>): Promise<string> {
    await this.opened;
    const started = new Promise<string>((resolve, reject) => {
      this.onStarted = resolve;
      this.onFail = reject;
      void this.closed.then(({ code, reason }) => reject(new Error(`closed (${code} ${reason}) before started`)));
    });
    this.ws.send(JSON.stringify(msg));
    return started;
  }

  send(msg: object | Buffer): void {
    this.ws.send(Buffer.isBuffer(msg) ? msg : JSON.stringify(msg));
  }

  stdout(): Buffer {
    return Buffer.concat(this.out);
  }

  stderr(): Buffer {
    return Buffer.concat(this.err);
  }
}
