// One multiplexed connection to a sandbox's coppice-agent (the unix socket the driver bound for it).
// Requests carry ids chosen here; every frame from the agent is routed to the handler of its id.
import { randomInt } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { encodeHeader, FrameDecoder, PayloadReader, ProtocolError, decodeError, type Frame } from './codec.ts';
import { connectionLost, fromErrorFrame, type AgentError } from './errors.ts';
import { AGENT_VERSION, T } from './protocol.ts';

export interface FrameHandler {
  frame(f: Frame): void;
  /** The connection ended: settle everything with err. */
  closed(err: AgentError): void;
}

export interface AgentHello {
  version: number;
  /** The agent's pid (1 when it is the sandbox's init). */
  pid: number;
}

export class AgentConnection {
  private readonly handlers = new Map<number, FrameHandler>();
  private nextId: number;
  private closedWith: AgentError | null = null;
  private readonly closeWaiters: Array<(err: AgentError) => void> = [];

  private constructor(
    private readonly socket: Socket,
    readonly hello: AgentHello,
    private readonly decoder: FrameDecoder,
    leftover: Frame[],
  ) {
    // a random start: ids of processes a previous connection left running (detached) stay distinct
    this.nextId = randomInt(1, 0x7fffffff);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.shutdown(connectionLost(err.message)));
    socket.on('close', () => this.shutdown(connectionLost('closed')));
    for (const f of leftover) this.route(f);
  }

  /** Connect and wait for the agent's HELLO. */
  static connect(path: string, opts: { timeoutMs?: number } = {}): Promise<AgentConnection> {
    return new Promise((resolve, reject) => {
      const socket = netConnect(path);
      const decoder = new FrameDecoder();
      const timer = setTimeout(() => fail(connectionLost(`no HELLO within ${opts.timeoutMs ?? 5000} ms`)), opts.timeoutMs ?? 5000);
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const onData = (chunk: Buffer) => {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch (err) {
          return fail(err as Error);
        }
        if (!frames.length) return;
        const [first, ...rest] = frames;
        if (first.type !== T.HELLO) return fail(new ProtocolError(`agent spoke first with frame type 0x${first.type.toString(16)}`));
        const r = new PayloadReader(first.payload);
        const hello = { version: r.u32(), pid: r.u32() };
        if (hello.version !== AGENT_VERSION) return fail(new ProtocolError(`agent protocol version ${hello.version}, expected ${AGENT_VERSION}`));
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('error', fail);
        socket.off('close', onClose);
        // the decoder goes along: it holds any part of a frame that came with HELLO
        resolve(new AgentConnection(socket, hello, decoder, rest));
      };
      const onClose = () => fail(connectionLost('closed before HELLO'));
      socket.on('data', onData);
      socket.on('error', fail);
      socket.on('close', onClose);
    });
  }

  get isClosed(): boolean {
    return this.closedWith !== null;
  }

  /** Resolves when the connection is gone (the agent replaced it, died, or close() was called). */
  whenClosed(): Promise<AgentError> {
    if (this.closedWith) return Promise.resolve(this.closedWith);
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  allocId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = this.nextId >= 0xfffffffe ? 1 : this.nextId + 1;
      if (!this.handlers.has(id)) return id;
    }
  }

  register(id: number, h: FrameHandler): void {
    this.handlers.set(id, h);
  }

  unregister(id: number): void {
    this.handlers.delete(id);
  }

  /** Queue a frame; false when the socket's buffer is full (wait for drained()). */
  send(type: number, id: number, payload?: Buffer): boolean {
    if (this.closedWith) return true; // dropped: the handlers have already been told
    const h = encodeHeader(type, id, payload?.length ?? 0);
    if (!payload?.length) return this.socket.write(h);
    this.socket.cork();
    this.socket.write(h);
    const ok = this.socket.write(payload);
    this.socket.uncork();
    return ok;
  }

  /** Resolves once the socket can take more (or the connection is gone). */
  drained(): Promise<void> {
    if (this.closedWith || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** One request, one reply: resolves with the reply frame of type `want`, rejects on ERROR. */
  request(type: number, payload: Buffer | undefined, want: number): Promise<Frame> {
    return new Promise((resolve, reject) => {
      if (this.closedWith) return reject(this.closedWith);
      const id = this.allocId();
      this.register(id, {
        frame: (f) => {
          this.unregister(id);
          if (f.type === want) return resolve(f);
          if (f.type === T.ERROR) {
            const e = decodeError(f.payload);
            return reject(fromErrorFrame(e.errno, e.message));
          }
          reject(new ProtocolError(`agent answered 0x${type.toString(16)} with frame type 0x${f.type.toString(16)}`));
        },
        closed: reject,
      });
      this.send(type, id, payload);
    });
  }

  close(): void {
    this.socket.destroy();
    this.shutdown(connectionLost('closed by us'));
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.socket.destroy();
      this.shutdown(connectionLost((err as Error).message));
      return;
    }
    for (const f of frames) this.route(f);
  }

  private route(f: Frame): void {
    // frames for ids nobody holds (a cancelled read's last chunk, a late STDIN_ACK) are dropped
    this.handlers.get(f.id)?.frame(f);
  }

  private shutdown(err: AgentError): void {
    if (this.closedWith) return;
    this.closedWith = err;
    const hs = [...this.handlers.values()];
    this.handlers.clear();
    for (const h of hs) h.closed(err);
    for (const w of this.closeWaiters.splice(0)) w(err);
  }
}
