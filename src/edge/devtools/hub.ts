// The inspection hub: one `system.inspect` subscription shared by every devtools client, held only
// while at least one client is connected. Each inspection event is sanitized and serialized once,
// then offered to every client's bounded outbox.
import type { AnyActorRef, InspectionEvent, Subscription } from 'xstate';
import type { Gateway } from '../../actors/gateway.ts';
import { eventSandbox, sanitizeContext, sanitizeEvent } from './sanitize.ts';
import type { DevtoolsMessage, OutboxLimits } from './protocol.ts';
import { buildTree, describeActor, kindOf, sandboxOf, stateWords, systemIdOf } from './tree.ts';

export const DEFAULT_LIMITS: OutboxLimits = {
  highWaterMark: 256 * 1024,
  maxQueueBytes: 1024 * 1024,
  maxQueueMessages: 5000,
};

/** The part of a WebSocket an outbox needs (so it can be tested with a fake). */
export interface Socket {
  readonly bufferedAmount: number;
  readonly readyState: number;
  send(data: string, cb?: (err?: Error) => void): void;
}

const OPEN = 1;

/**
 * A client's bounded queue. Messages go straight to the socket while it keeps up; when the socket
 * has more than `highWaterMark` bytes buffered they wait here; when the queue is full, messages are
 * dropped, and once everything queued has gone out the client gets `dropped` (what it missed) and
 * a fresh `tree` (from `resync`), so its picture is consistent again. Dropping continues until then:
 * a lagging client sees a gap, then the present, never a picture with holes in it.
 */
export class Outbox {
  private queue: string[] = [];
  private queuedBytes = 0;
  private dropping: { count: number; fromSeq: number; toSeq: number } | null = null;
  private resyncPending = false;
  private closed = false;
  /** Totals, for tests and logs. */
  sent = 0;
  droppedTotal = 0;

  constructor(
    private readonly socket: Socket,
    private readonly limits: OutboxLimits,
    /** The fresh tree message sent after a drop (built when it is sent). */
    private readonly resync: () => string,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  /** Offer one message (already serialized); `seq` identifies it in a drop report. */
  push(text: string, seq: number): void {
    if (this.closed) return;
    if (this.dropping) return this.drop(seq);
    if (this.queue.length === 0 && this.socket.bufferedAmount < this.limits.highWaterMark) {
      this.write(text);
      return;
    }
    if (this.queue.length >= this.limits.maxQueueMessages || this.queuedBytes + text.length > this.limits.maxQueueBytes) {
      this.dropping = { count: 0, fromSeq: seq, toSeq: seq };
      return this.drop(seq);
    }
    this.queue.push(text);
    this.queuedBytes += text.length;
  }

  /** Send what the socket can take now; called on every write completion and by a timer. */
  flush(): void {
    if (this.closed || this.socket.readyState !== OPEN) return;
    while (this.queue.length > 0 && this.socket.bufferedAmount < this.limits.highWaterMark) {
      const text = this.queue.shift()!;
      this.queuedBytes -= text.length;
      this.write(text);
    }
    if (this.dropping && this.queue.length === 0 && !this.resyncPending && this.socket.bufferedAmount < this.limits.highWaterMark) {
      const report = this.dropping;
      this.resyncPending = true;
      // Out of the inspection callback: the tree is read after the actor has settled.
      setImmediate(() => {
        this.resyncPending = false;
        if (this.closed || this.socket.readyState !== OPEN) return;
        this.write(JSON.stringify({ type: 'dropped', ...report } satisfies DevtoolsMessage));
        this.write(this.resync());
        // Messages dropped while the resync was being prepared are covered by the tree just sent.
        this.dropping = null;
      });
    }
  }

  /** Send now, regardless of the queue (hello, a tree asked for, errors). */
  sendNow(text: string): void {
    if (!this.closed) this.write(text);
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.queuedBytes = 0;
  }

  private drop(seq: number): void {
    this.dropping!.count += 1;
    this.dropping!.toSeq = seq;
    this.droppedTotal += 1;
  }

  private write(text: string): void {
    if (this.socket.readyState !== OPEN) return;
    this.sent += 1;
    this.socket.send(text, (err) => {
      if (!err) this.flush();
    });
  }
}

export interface HubClient {
  outbox: Outbox;
  /** Only messages about this sandbox (null: everything). */
  filter: string | null;
}

export class DevtoolsHub {
  private readonly clients = new Set<HubClient>();
  private sub: Subscription | null = null;
  private announced = new WeakSet<object>();
  private seq = 0;
  /** How many times the hub subscribed to inspection (tests). */
  subscriptions = 0;

  constructor(private readonly gw: Gateway) {}

  /** True while subscribed to the actor system's inspection. */
  get watching(): boolean {
    return this.sub !== null;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  nextSeq(): number {
    return this.seq;
  }

  add(client: HubClient): void {
    this.clients.add(client);
    if (!this.sub) {
      this.announced = new WeakSet();
      this.subscriptions += 1;
      this.sub = this.gw.actor.system.inspect({ next: (ev) => this.onInspect(ev) });
    }
  }

  remove(client: HubClient): void {
    this.clients.delete(client);
    client.outbox.close();
    if (this.clients.size === 0 && this.sub) {
      this.sub.unsubscribe();
      this.sub = null;
    }
  }

  treeMessage(filter: string | null): string {
    return JSON.stringify({ type: 'tree', seq: this.seq, tree: buildTree(this.gw, { sandbox: filter }) } satisfies DevtoolsMessage);
  }

  private onInspect(ev: InspectionEvent): void {
    // Never let the devtools break the actor system: whatever goes wrong here is logged and dropped.
    try {
      switch (ev.type) {
        case '@xstate.actor': {
          // The systemId is set right after this callback, inside the actor's constructor.
          const ref = ev.actorRef as AnyActorRef;
          queueMicrotask(() => this.announce(ref));
          return;
        }
        case '@xstate.event': {
          const target = ev.actorRef as AnyActorRef;
          const source = ev.sourceRef as AnyActorRef | undefined;
          this.announce(target);
          const sandbox = sandboxOf(target) ?? (source ? sandboxOf(source) : null) ?? eventSandbox(ev.event) ?? null;
          this.broadcast({
            type: 'event',
            seq: ++this.seq,
            ts: Date.now(),
            sandbox,
            target: target.sessionId,
            targetId: target.id,
            source: source?.sessionId ?? null,
            event: sanitizeEvent(ev.event),
          });
          return;
        }
        case '@xstate.snapshot': {
          const ref = ev.actorRef as AnyActorRef;
          this.announce(ref);
          const kind = kindOf(ref);
          const snap = ev.snapshot as { status?: string; value?: unknown; context?: unknown };
          const msg: DevtoolsMessage = {
            type: 'snapshot',
            seq: ++this.seq,
            ts: Date.now(),
            sandbox: sandboxOf(ref),
            actor: ref.sessionId,
            actorId: ref.id,
            systemId: systemIdOf(ref),
            kind,
            status: snap.status ?? 'unknown',
            value: kind === 'effect' ? null : (snap.value ?? null),
            state: kind === 'effect' ? null : stateWords(kind, snap.value),
          };
          const ctx = sanitizeContext(kind, snap.context);
          if (ctx !== undefined) msg.context = ctx;
          this.broadcast(msg);
          return;
        }
        default:
          return; // microsteps and actions: too fine-grained for this view
      }
    } catch (err) {
      this.gw.log.debug({ err: (err as Error).message }, 'devtools: inspection event skipped');
    }
  }

  private announce(ref: AnyActorRef): void {
    if (this.announced.has(ref) || !this.sub) return;
    this.announced.add(ref);
    const actor = describeActor(ref, false);
    this.broadcast({ type: 'actor', seq: ++this.seq, ts: Date.now(), sandbox: actor.sandbox, actor });
  }

  private broadcast(msg: DevtoolsMessage & { seq: number; sandbox: string | null }): void {
    if (this.clients.size === 0) return;
    let text: string | undefined;
    for (const c of this.clients) {
      if (c.filter !== null && msg.sandbox !== c.filter) continue;
      text ??= JSON.stringify(msg);
      c.outbox.push(text, msg.seq);
    }
  }
}
