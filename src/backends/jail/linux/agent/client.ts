// The gateway's handle on one sandbox's coppice-agent: processes, files, watches and stats over one
// multiplexed connection (see docs/agent.md).
import { Readable } from 'node:stream';
import { PayloadReader, encodeStart, type AgentCred, type AgentEntry, type StartSpec } from './codec.ts';
import { AgentConnection, type AgentHello } from './connection.ts';
import type { AgentError } from './errors.ts';
import * as files from './files.ts';
import { AgentProcess } from './process.ts';
import { PF, T } from './protocol.ts';

export interface AgentStats {
  cpuUsec: bigint;
  userUsec: bigint;
  systemUsec: bigint;
  memCurrent: bigint;
  /** 0n: no limit */
  memMax: bigint;
}

export interface AgentProcInfo {
  id: number;
  pid: number;
  pty: boolean;
  exited: boolean;
  /** Started or attached by an earlier connection and not attached since. */
  detached: boolean;
}

export class AgentClient {
  private constructor(readonly conn: AgentConnection) {}

  static async connect(socketPath: string, opts: { timeoutMs?: number } = {}): Promise<AgentClient> {
    return new AgentClient(await AgentConnection.connect(socketPath, opts));
  }

  get hello(): AgentHello {
    return this.conn.hello;
  }

  get isClosed(): boolean {
    return this.conn.isClosed;
  }

  whenClosed(): Promise<AgentError> {
    return this.conn.whenClosed();
  }

  close(): void {
    this.conn.close();
  }

  /** Start a command; the returned process's `started` rejects (and `exited` too) if it could not start. */
  exec(spec: StartSpec): AgentProcess {
    const payload = encodeStart(spec); // throws RangeError on bad input, before anything is sent
    const p = new AgentProcess(this.conn, this.conn.allocId(), !!spec.pty);
    this.conn.send(T.START, p.id, payload);
    return p;
  }

  /** Take over a process an earlier connection started (see processes()): its output from here on, its exit. */
  async attach(id: number, pty: boolean): Promise<AgentProcess> {
    const p = new AgentProcess(this.conn, id, pty);
    this.conn.send(T.ATTACH, id);
    await p.started; // ATTACH's OK carries the pid, like STARTED
    return p;
  }

  async processes(): Promise<AgentProcInfo[]> {
    const f = await this.conn.request(T.PROCS, undefined, T.OK);
    const out: AgentProcInfo[] = [];
    const r = new PayloadReader(f.payload);
    while (r.off + 12 <= f.payload.length) {
      const id = r.u32();
      const pid = r.u32();
      const flags = r.u32();
      out.push({ id, pid, pty: !!(flags & PF.PTY), exited: !!(flags & PF.EXITED), detached: !!(flags & PF.DETACHED) });
    }
    return out;
  }

  async ping(): Promise<void> {
    await this.conn.request(T.PING, undefined, T.OK);
  }

  async stats(): Promise<AgentStats> {
    const r = new PayloadReader((await this.conn.request(T.STATS, undefined, T.STATS_REPLY)).payload);
    return { cpuUsec: r.u64(), userUsec: r.u64(), systemUsec: r.u64(), memCurrent: r.u64(), memMax: r.u64() };
  }

  readFile(path: string, cred?: AgentCred): Readable {
    return files.readFile(this.conn, path, cred);
  }

  async readFileBuffer(path: string, cred?: AgentCred): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.readFile(path, cred)) parts.push(c as Buffer);
    return Buffer.concat(parts);
  }

  writeFile(path: string, data: files.WriteSource, opts?: { cred?: AgentCred; mode?: number }): Promise<AgentEntry> {
    return files.writeFile(this.conn, path, data, opts);
  }

  stat(path: string, opts?: { cred?: AgentCred; follow?: boolean }): Promise<AgentEntry> {
    return files.stat(this.conn, path, opts);
  }

  list(path: string, opts?: { cred?: AgentCred; depth?: number }): Promise<AgentEntry[]> {
    return files.list(this.conn, path, opts);
  }

  mkdir(path: string, opts?: { cred?: AgentCred; mode?: number }): Promise<{ created: boolean }> {
    return files.mkdir(this.conn, path, opts);
  }

  rename(from: string, to: string, opts?: { cred?: AgentCred }): Promise<void> {
    return files.rename(this.conn, from, to, opts);
  }

  remove(path: string, opts?: { cred?: AgentCred }): Promise<void> {
    return files.remove(this.conn, path, opts);
  }

  watch(path: string, opts?: { cred?: AgentCred; recursive?: boolean }): Promise<files.AgentWatch> {
    return files.watch(this.conn, path, opts);
  }
}
