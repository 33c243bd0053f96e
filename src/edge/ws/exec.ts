// Streaming exec over WebSocket: `GET /sandboxes/:id/exec/ws` (HTTP/1.1 upgrade).
//
// AUTH, checked before the upgrade (refusals are plain HTTP with the JSON error body
// {code, error, message}: 401 bad/missing key, 404 unknown sandbox, 503 gateway stopped):
//   - `Authorization: Bearer <key>` or `X-API-KEY: <key>`, as REST;
//   - browsers, which cannot set headers: offer two subprotocols,
//       new WebSocket(url, ['coppice.exec.v1', 'coppice.key.' + key])
//     The server selects `coppice.exec.v1` and never echoes the key. (No `?token=` query: URLs end up
//     in proxy and access logs.)
//
// ONE CONNECTION DRIVES ONE COMMAND. The first client frame is JSON, either
//   {"type":"start", "cmd":"echo hi" | "argv":["echo","hi"], "env":{}, "cwd":"/", "user":"root",
//    "timeoutMs":0, "stdin":false, "pty":{"cols":80,"rows":24}}
//       timeoutMs: 0/absent = no deadline. stdin: true keeps the command's stdin open for the
//       client (default false: closed at start, so `cat` without it sees EOF at once).
//       pty (cols, rows 1..1000): the command gets a terminal; its output is one stream (tag 1),
//       TERM=xterm-256color unless env sets it, Ctrl-C is the byte 0x03 on stdin. A sandbox that
//       cannot give a terminal refuses the start (4501, field "pty").
//       -> {"type":"started","processID":"7","sandboxID":"..."}
//   {"type":"attach", "processID":"7", "from":12345, "lossy":false}
//       from: output offset to resume at (default: the oldest byte still kept).
//       -> {"type":"attached","processID":"7","sandboxID":"...","from":F,"dropped":D,"running":true,"outputBytes":N}
//          F = the offset of the first byte that follows; D = bytes asked for but no longer kept.
// Messages sent before `started` arrives are queued, so a client may pipeline start + stdin + close_stdin.
//
// OUTPUT: binary frames, byte 0 = stream tag (1 stdout, 2 stderr), the rest = raw bytes (any bytes,
// not only UTF-8). Frames come in output order; offset of a frame = F (or 0 after start) + the sum
// of earlier payload lengths: a client that tracks it can re-attach with `from` and miss nothing.
//   {"type":"dropped","bytes":N,"at":O}   bytes [O, O+N) were not delivered (lossy readers only).
//   {"type":"exit","exitCode":0|null,"signal":"SIGINT"|null,"reason"?:"timeout"|"killed",
//    "error"?:{code,message},"outputBytes":N}
//       exactly once per connection, after all output; the server then closes with 1000.
//       reason "timeout": killed at timeoutMs (signal SIGKILL); "killed": the sandbox went away.
//
// CONTROL (after start/attach; any attached client may send them):
//   binary frame                        stdin bytes
//   {"type":"stdin","data":"<base64>"}  stdin bytes
//   {"type":"close_stdin"}
//   {"type":"signal","signal":"SIGINT"} any signal name (SIGINT, SIGTERM, SIGKILL, SIGHUP, ...)
//   {"type":"resize","cols":120,"rows":40}  a pty command's new window size (it gets SIGWINCH)
// A bad message gets {"type":"error","code":400,"error":"bad_request","message":...,"field"?}; a
// refused start/attach is followed by a close with code 4000 + HTTP status (4400, 4404, 4409, 4503).
//
// DISCONNECT does not kill the command: it keeps running and its output goes to the replay
// buffer; `GET /sandboxes/:id/processes` lists commands, and an attach by processID gets the rest
// and the exit. Finished commands' exits are kept 10 minutes (see actors/process-table.ts).
//
// FLOW CONTROL: a client whose ws.bufferedAmount exceeds `highWaterMark` (1 MiB) gets nothing more
// until it drains; a lossless client that falls 4 MiB behind pauses the command's output pipes
// (the command blocks on write). Several attached clients: the command runs at the pace of the
// slowest lossless one; `lossy` clients never hold it back (see actors/process-channel.ts).
// Stdin: while more than 1 MiB of stdin waits for the command, this socket is not read.
// Keepalive: the server pings every 30 s; a client that has not answered by the next ping is
// dropped (detached, not killed).
import type { IncomingMessage } from 'node:http';
import { constants } from 'node:os';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import { guardUpgrade, rejectUpgrade, upgradeAuth, upgradeOnlyRoute, upgradePath, wsServer } from './upgrade.ts';

export { rejectUpgrade };
import { z } from 'zod';
import type { Gateway } from '../../actors/gateway.ts';
import type { Reader, Stream, Subscription } from '../../actors/process-channel.ts';
import type { ProcessEntry } from '../../actors/process-table.ts';
import { badRequest, CoppiceError, fromErrorInfo } from '../../errors.ts';
import { errorBody, httpStatusOf, toHttpError } from '../../http/errors.ts';
import type { Router } from '../../http/router.ts';
import { execBody, parse } from '../../protocol/requests.ts';
import {
  CLOSE_EXITED,
  closeCodeFor,
  EXEC_WS_PROTOCOL,
  TAG_STDERR,
  TAG_STDOUT,
  type ServerMessage,
} from '../../protocol/exec-ws.ts';

export interface ExecWsOptions {
  /** Stop sending to a client above this many buffered bytes. */
  highWaterMark?: number;
  /** Stop reading a client's stdin while this much waits for the command. */
  stdinHighWaterMark?: number;
  pingMs?: number;
  /** Time allowed for the first (start/attach) message. */
  firstMessageMs?: number;
  maxPayload?: number;
}

const STDOUT_TAG = Buffer.from([TAG_STDOUT]);
const STDERR_TAG = Buffer.from([TAG_STDERR]);
const PATH = /^\/sandboxes\/([^/]+)\/exec\/ws\/?$/;
const ROUTE = '/sandboxes/:id/exec/ws';

const termSize = z.number().int().min(1).max(1000);
const ptySize = z.object({ cols: termSize, rows: termSize }).strict();
const startSchema = execBody
  .innerType()
  .omit({ stdin: true })
  .extend({ type: z.literal('start'), stdin: z.boolean().optional(), pty: ptySize.optional() })
  .superRefine((b, ctx) => {
    if ((b.cmd === undefined) === (b.argv === undefined)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['cmd'], message: 'give exactly one of cmd (a shell string) or argv (an array)' });
    }
  });
const attachSchema = z
  .object({
    type: z.literal('attach'),
    processID: z.string().min(1).max(32),
    from: z.number().int().min(0).optional(),
    lossy: z.boolean().optional(),
  })
  .strict();
const signalName = z
  .string()
  .regex(/^SIG[A-Z0-9]+$/, 'must be a signal name like SIGINT')
  .refine((s) => s in constants.signals, 'unknown signal');
const controlSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('stdin'), data: z.string() }).strict(),
  z.object({ type: z.literal('close_stdin') }).strict(),
  z.object({ type: z.literal('signal'), signal: signalName }).strict(),
  z.object({ type: z.literal('resize'), cols: termSize, rows: termSize }).strict(),
]);

export interface ExecWebSocket {
  /** Handles the upgrade if the path is ours (true), else leaves the socket alone (false). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  /** Connected clients (for tests and metrics). */
  readonly clients: Set<WebSocket>;
  close(): void;
}

export function createExecWebSocket(
  gw: Gateway,
  router: Router,
  authorized: (req: IncomingMessage) => boolean,
  opts: ExecWsOptions = {},
): ExecWebSocket {
  const wss = wsServer(EXEC_WS_PROTOCOL, opts.maxPayload ?? 16 * 1024 * 1024);
  upgradeOnlyRoute(router, ROUTE);
  const count = (status: number) => gw.metrics.httpRequests.inc({ method: 'GET', route: ROUTE, status: String(status) });

  const keyOk = upgradeAuth(authorized);

  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): boolean => {
    const pathname = upgradePath(req);
    if (pathname === null) return false;
    const m = PATH.exec(pathname);
    if (!m) return false;
    const { refuse, refused } = guardUpgrade(req, socket, { route: ROUTE, keyOk, count, log: gw.log });
    if (refused) return true;
    let id: string;
    try {
      id = decodeURIComponent(m[1]!);
      gw.view(id);
    } catch (err) {
      refuse(err instanceof CoppiceError ? err : new CoppiceError('not_found', 'sandbox not found'));
      return true;
    }
    if (gw.lifecycle === 'stopped') {
      refuse(new CoppiceError('draining', 'gateway is stopped'));
      return true;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      count(101);
      new ExecSession(gw, id, ws, opts).run();
    });
    return true;
  };

  // After the drain every command has sent its exit; drop whoever is still connected.
  void gw.stopped.then(() => {
    for (const ws of wss.clients) ws.terminate();
  });

  return {
    handleUpgrade,
    clients: wss.clients,
    close() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
}

type Phase = 'new' | 'starting' | 'bound' | 'closed';

/** One connection: binds to one command (start or attach), then relays bytes and control. */
class ExecSession {
  private phase: Phase = 'new';
  private entry: ProcessEntry | null = null;
  private sub: Subscription | null = null;
  private queued: { data: RawData; isBinary: boolean }[] = [];
  private blocked = false;
  private stdinPaused = false;
  private alive = true;
  private firstTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private readonly hwm: number;
  private readonly stdinHwm: number;
  private readonly openedAt = Date.now();
  private mode: 'start' | 'attach' | null = null;
  /** This connection started its command on a terminal. */
  private pty = false;
  private sent = 0;
  /** The output byte counter's child, bound once (it is bumped per chunk). */
  private readonly bytesOut: { inc(n: number): void };
  /** Output frames handed to ws whose write has not completed yet. */
  private inFlight = 0;
  private readonly onSent = (err?: Error) => {
    this.inFlight -= 1;
    if (err || !this.blocked) return;
    // Resume at half the high-water mark (or when nothing of ours is pending, so we can never stall).
    if (this.ws.bufferedAmount < this.hwm / 2 || this.inFlight === 0) {
      this.blocked = false;
      this.sub?.pump();
    }
  };

  constructor(
    private readonly gw: Gateway,
    private readonly sandboxId: string,
    private readonly ws: WebSocket,
    private readonly opts: ExecWsOptions,
  ) {
    this.hwm = opts.highWaterMark ?? 1024 * 1024;
    this.stdinHwm = opts.stdinHighWaterMark ?? 1024 * 1024;
    this.bytesOut = gw.metrics.wsExecBytes.labels('out');
  }

  run(): void {
    const { ws } = this;
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('close', () => this.onClose());
    ws.on('error', (err) => this.gw.log.debug({ err: err.message, sandbox: this.sandboxId }, 'ws error'));
    ws.on('pong', () => (this.alive = true));
    this.firstTimer = setTimeout(
      () => this.refuse(new CoppiceError('timeout', 'no start or attach message received in time')),
      this.opts.firstMessageMs ?? 30_000,
    );
    this.pingTimer = setInterval(() => {
      if (!this.alive) return void ws.terminate();
      this.alive = false;
      ws.ping();
    }, this.opts.pingMs ?? 30_000);
  }

  // ---- inbound ----

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.phase === 'closed') return;
    if (this.phase === 'starting') {
      this.queued.push({ data, isBinary });
      return;
    }
    if (this.phase === 'new') {
      clearTimeout(this.firstTimer);
      if (isBinary) return this.refuse(badRequest('type', 'the first message must be a JSON start or attach'));
      const msg = this.json(data);
      if (msg === undefined) return this.refuse(badRequest('body', 'malformed JSON'));
      const type = (msg as { type?: unknown })?.type;
      if (type === 'start') return void this.start(msg);
      if (type === 'attach') return this.attach(msg);
      return this.refuse(badRequest('type', 'the first message must be {"type":"start"} or {"type":"attach"}'));
    }
    this.control(data, isBinary);
  }

  private json(data: RawData): unknown {
    try {
      return JSON.parse(toBuffer(data).toString('utf8'));
    } catch {
      return undefined;
    }
  }

  private async start(raw: unknown): Promise<void> {
    this.phase = 'starting';
    this.mode = 'start';
    try {
      const b = parse(startSchema, raw);
      this.pty = b.pty !== undefined;
      this.gw.assertServing();
      const channel = await this.gw.startProcess(
        this.sandboxId,
        {
          argv: b.argv ?? ['/bin/sh', '-c', b.cmd!],
          env: b.env,
          cwd: b.cwd,
          user: b.user,
          timeoutMs: b.timeoutMs ?? 0,
          keepStdinOpen: b.stdin ?? false,
          ...(b.pty ? { pty: b.pty } : {}),
        },
        { kind: 'stream' },
      );
      // A terminal the sandbox could not give (no agent, bhyve) is refused, not run without one.
      const never = channel.exit;
      if (b.pty && never?.error && never.exitCode === null && never.signal === null) throw fromErrorInfo(never.error);
      const entry = this.gw.processEntry(this.sandboxId, channel.processId);
      // The client left while it started: the command runs detached (re-attach by its id).
      if ((this.phase as Phase) === 'closed') return;
      this.send({ type: 'started', processID: entry.processId, sandboxID: this.sandboxId });
      this.bind(entry, 0, false);
    } catch (err) {
      if (toHttpError(err).unexpected) this.gw.log.error({ err, sandbox: this.sandboxId }, 'ws exec start failed');
      this.refuse(asCoppice(err));
    }
  }

  private attach(raw: unknown): void {
    this.mode = 'attach';
    try {
      const b = parse(attachSchema, raw);
      const entry = this.gw.processEntry(this.sandboxId, b.processID);
      const produced = entry.channel.outputBytes;
      if (b.from !== undefined && b.from > produced) {
        throw badRequest('from', `offset ${b.from} is beyond the ${produced} bytes produced so far`);
      }
      this.bind(entry, b.from, b.lossy ?? false);
    } catch (err) {
      this.refuse(asCoppice(err));
    }
  }

  private bind(entry: ProcessEntry, from: number | undefined, lossy: boolean): void {
    this.entry = entry;
    this.phase = 'bound';
    this.gw.metrics.wsExecSessions.inc({ mode: this.mode ?? 'start' });
    this.gw.metrics.wsExecActive.inc();
    const sub = entry.channel.attach(this.reader(), { from, lossy });
    this.sub = sub;
    if (this.mode === 'attach') {
      this.send({
        type: 'attached',
        processID: entry.processId,
        sandboxID: this.sandboxId,
        from: sub.from,
        dropped: sub.dropped,
        running: entry.channel.exit === null,
        outputBytes: entry.channel.outputBytes,
      });
    }
    const queued = this.queued;
    this.queued = [];
    for (const q of queued) this.control(q.data, q.isBinary);
    sub.pump();
  }

  private control(data: RawData, isBinary: boolean): void {
    if (this.phase !== 'bound' || !this.entry) return;
    if (isBinary) return this.stdin(toBuffer(data));
    const raw = this.json(data);
    if (raw === undefined) return this.error(badRequest('body', 'malformed JSON'));
    let msg: z.infer<typeof controlSchema>;
    try {
      msg = parse(controlSchema, raw);
    } catch (err) {
      const type = (raw as { type?: unknown })?.type;
      if (type === 'start' || type === 'attach') {
        return this.error(new CoppiceError('conflict', `this connection already drives process ${this.entry.processId}`));
      }
      return this.error(asCoppice(err));
    }
    switch (msg.type) {
      case 'stdin':
        return this.stdin(Buffer.from(msg.data, 'base64'));
      case 'close_stdin':
        if (!this.entry.stdinOpen) return;
        this.entry.stdinOpen = false;
        this.entry.ref?.send({ type: 'CLOSE_STDIN' });
        return;
      case 'signal':
        if (!this.entry.ref) return this.error(new CoppiceError('conflict', `process ${this.entry.processId} has exited`));
        this.entry.ref.send({ type: 'SIGNAL', signal: msg.signal });
        return;
      case 'resize':
        if (!this.entry.ref) return this.error(new CoppiceError('conflict', `process ${this.entry.processId} has exited`));
        if (this.mode === 'start' && !this.pty) return this.error(badRequest('type', 'resize needs a command started with "pty"'));
        this.entry.ref.send({ type: 'RESIZE', cols: msg.cols, rows: msg.rows });
        return;
    }
  }

  private stdin(bytes: Buffer): void {
    const e = this.entry!;
    if (!e.stdinOpen || !e.ref) {
      return this.error(new CoppiceError('conflict', `stdin of process ${e.processId} is closed (start with "stdin": true to keep it open)`));
    }
    if (bytes.length === 0) return;
    this.gw.metrics.wsExecBytes.inc({ direction: 'in' }, bytes.length);
    e.ref.send({ type: 'STDIN', data: bytes });
    if (!this.stdinPaused && e.channel.stdinBacklog() > this.stdinHwm) {
      this.stdinPaused = true;
      this.ws.pause();
      e.channel.onceStdinDrained(() => {
        this.stdinPaused = false;
        if (this.phase !== 'closed') this.ws.resume();
      });
    }
  }

  // ---- outbound ----

  private reader(): Reader {
    return {
      ready: () => {
        if (this.ws.readyState !== WebSocket.OPEN) return false;
        if (this.ws.bufferedAmount < this.hwm) return true;
        this.blocked = true;
        return false;
      },
      data: (stream: Stream, chunk: Buffer) => {
        // One binary message = tag byte + bytes, sent as two fragments (a 1-byte first fragment and
        // the chunk as its continuation) so the gateway never copies output; receivers reassemble.
        this.sent += chunk.length;
        this.bytesOut.inc(chunk.length);
        this.inFlight += 1;
        this.ws.send(stream === 'stdout' ? STDOUT_TAG : STDERR_TAG, { binary: true, fin: false });
        this.ws.send(chunk, { binary: true, fin: true }, this.onSent);
      },
      dropped: (bytes, at) => this.send({ type: 'dropped', bytes, at }),
      exit: (exit, outputBytes) => {
        this.send({ type: 'exit', exitCode: exit.exitCode, signal: exit.signal, ...(exit.reason ? { reason: exit.reason } : {}), ...(exit.error ? { error: exit.error } : {}), outputBytes });
        this.phase = 'closed';
        this.ws.close(CLOSE_EXITED, 'exited');
      },
    };
  }

  private send(msg: ServerMessage): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** A bad control message: say so, keep the connection. */
  private error(err: CoppiceError): void {
    this.send({ type: 'error', ...errorBody(err) });
  }

  /** A refused start/attach: say so and close with 4000 + status. */
  private refuse(err: CoppiceError): void {
    if (this.phase === 'closed') return;
    this.error(err);
    this.phase = 'closed';
    this.ws.close(closeCodeFor(httpStatusOf(err.code)), truncate(err.message, 120));
  }

  private onClose(): void {
    const wasBound = this.entry !== null;
    this.phase = 'closed';
    clearTimeout(this.firstTimer);
    clearInterval(this.pingTimer);
    this.sub?.detach();
    if (wasBound) {
      this.gw.metrics.wsExecActive.dec();
      const e = this.entry!;
      this.gw.log.info(
        {
          sandbox: this.sandboxId,
          processID: e.processId,
          mode: this.mode,
          bytes: this.sent,
          ms: Date.now() - this.openedAt,
          ...(e.channel.exit ? { exit: e.channel.exit } : { detached: true }),
        },
        'ws exec session closed',
      );
    }
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function asCoppice(err: unknown): CoppiceError {
  return toHttpError(err).error;
}

function truncate(s: string, max: number): string {
  // Close reasons are limited to 123 bytes.
  let out = s;
  while (Buffer.byteLength(out) > max) out = out.slice(0, -1);
  return out;
}
