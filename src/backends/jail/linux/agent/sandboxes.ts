// The driver's agent connections, one per sandbox: made after `runc start` (or at re-adoption, or
// at resume when the sandbox was adopted frozen), dropped at destroy. A connection that goes away
// on its own marks the sandbox degraded (one log line): its execs fall back to `runc exec`.
import { existsSync } from 'node:fs';
import type { BackendLogger } from '../../../types.ts';
import { AgentClient } from './client.ts';

export type AgentState =
  /** Connected: execs go through the agent. */
  | 'connected'
  /** Has an agent, not connected yet (adopted while frozen: connects at resume). */
  | 'pending'
  /** Its agent connection was lost or could not be made: execs use `runc exec`. */
  | 'degraded'
  /** Created without an agent (agent off, or by a gateway without one): `runc exec`. */
  | 'none';

interface Entry {
  state: AgentState;
  sock: string;
  client?: AgentClient;
  /** Starts sent whose STARTED (or failure) has not come back yet: pause waits for them. */
  starting: Set<Promise<unknown>>;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

export class SandboxAgents {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly log: BackendLogger,
    private readonly connectTimeoutMs = 5000,
  ) {}

  state(id: string): AgentState {
    return this.entries.get(id)?.state ?? 'none';
  }

  /** The live client, or undefined (then exec falls back to runc exec). */
  client(id: string): AgentClient | undefined {
    const e = this.entries.get(id);
    return e?.state === 'connected' && e.client && !e.client.isClosed ? e.client : undefined;
  }

  /** Remember that the sandbox has an agent at `sock` without connecting (it is frozen). */
  expect(id: string, sock: string): void {
    this.entries.set(id, { state: existsSync(sock) ? 'pending' : 'none', sock, starting: new Set() });
  }

  /**
   * Connect to the sandbox's agent. `required` (a fresh create): a failure throws. Otherwise
   * (adoption, resume) a missing socket means "no agent" and a failed connect means degraded.
   */
  async connect(id: string, sock: string, required: boolean): Promise<void> {
    const prev = this.entries.get(id);
    const entry: Entry = { state: 'pending', sock, starting: prev?.starting ?? new Set() };
    this.entries.set(id, entry);
    prev?.client?.close(); // replaced: its end is expected (the handler sees a newer entry)
    if (!required && !existsSync(sock)) {
      entry.state = 'none';
      this.log.info({ id }, 'sandbox has no agent (created without one): exec uses runc exec');
      return;
    }
    let client: AgentClient;
    try {
      client = await AgentClient.connect(sock, { timeoutMs: this.connectTimeoutMs });
    } catch (e) {
      if (required) {
        this.entries.delete(id);
        throw e;
      }
      entry.state = 'degraded';
      this.log.warn({ id, err: message(e) }, 'sandbox degraded: no agent connection, exec falls back to runc exec');
      return;
    }
    if (this.entries.get(id) !== entry) return client.close(); // forgotten (destroyed) meanwhile
    entry.client = client;
    entry.state = 'connected';
    void client.whenClosed().then((why) => {
      if (this.entries.get(id) !== entry || entry.client !== client) return; // destroyed or replaced: expected
      entry.state = 'degraded';
      this.log.warn({ id, err: why.message }, 'sandbox degraded: agent connection lost, exec falls back to runc exec');
    });
  }

  /** Count a start until its STARTED (or failure) is back. */
  track(id: string, started: Promise<unknown>): void {
    const e = this.entries.get(id);
    if (!e) return;
    const p = started.then(
      () => undefined,
      () => undefined,
    );
    e.starting.add(p);
    void p.then(() => e.starting.delete(p));
  }

  /** Before a freeze: let the starts in flight get their STARTED, at most `timeoutMs`. */
  async settleStarts(id: string, timeoutMs = 2000): Promise<void> {
    const e = this.entries.get(id);
    if (!e || e.starting.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...e.starting]), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Destroy: close without reporting the sandbox degraded. */
  forget(id: string): void {
    const e = this.entries.get(id);
    this.entries.delete(id);
    e?.client?.close();
  }

  closeAll(): void {
    for (const id of [...this.entries.keys()]) this.forget(id);
  }
}
