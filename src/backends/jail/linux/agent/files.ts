// File operations done by the agent inside the sandbox as the given user: reads streamed under
// credit, writes streamed into a temporary file that replaces the target atomically at the end.
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { PayloadWriter, ROOT, decodeEntry, decodeError, decodeEvent, type AgentCred, type AgentEntry, type Frame } from './codec.ts';
import type { AgentConnection } from './connection.ts';
import { fromErrorFrame, type AgentError } from './errors.ts';
import { CHUNK, T, WINDOW, type WatchEventKind } from './protocol.ts';

const req = (cred: AgentCred | undefined) => new PayloadWriter().cred(cred ?? ROOT);
const errorOf = (f: Frame) => {
  const e = decodeError(f.payload);
  return fromErrorFrame(e.errno, e.message);
};

/** A file's bytes as a stream; the agent sends more as they are read. Destroying it cancels the read. */
export function readFile(conn: AgentConnection, path: string, cred?: AgentCred): Readable {
  const id = conn.allocId();
  let owed = 0;
  let ended = false;
  const credit = (n: number) => conn.send(T.CREDIT, id, new PayloadWriter().u32(0).u32(n).done());
  const stream = new Readable({
    highWaterMark: WINDOW,
    read() {
      if (owed) credit(owed), (owed = 0);
    },
    destroy(err, cb) {
      if (!ended) {
        ended = true;
        conn.unregister(id);
        conn.send(T.CANCEL, id);
      }
      cb(err);
    },
  });
  conn.register(id, {
    frame(f) {
      if (f.type === T.FDATA) {
        if (stream.push(f.payload)) credit(f.payload.length);
        else owed += f.payload.length;
      } else if (f.type === T.FEND || f.type === T.ERROR) {
        ended = true;
        conn.unregister(id);
        if (f.type === T.FEND) stream.push(null);
        else stream.destroy(errorOf(f));
      }
    },
    closed: (err) => ((ended = true), stream.destroy(err)),
  });
  conn.send(T.FREAD, id, req(cred).str(path, 'path').done());
  return stream;
}

export type WriteSource = Buffer | string | AsyncIterable<Buffer | string>;

/** Write (create or atomically replace) a file; resolves with the new file's entry. */
export function writeFile(
  conn: AgentConnection,
  path: string,
  data: WriteSource,
  opts: { cred?: AgentCred; mode?: number } = {},
): Promise<AgentEntry> {
  const id = conn.allocId();
  let failed: AgentError | null = null;
  const result = new Promise<AgentEntry>((resolve, reject) => {
    conn.register(id, {
      frame(f) {
        if (f.type === T.OK) return; // accepted: the data is on its way
        conn.unregister(id);
        if (f.type === T.ENTRY) resolve(decodeEntry(f.payload));
        else if (f.type === T.ERROR) reject((failed = errorOf(f)));
      },
      closed: (err) => reject((failed = err)),
    });
  });
  result.catch(() => undefined);
  const send = async () => {
    conn.send(T.FWRITE, id, req(opts.cred).u32(opts.mode ?? 0).str(path, 'path').done());
    const chunks: AsyncIterable<Buffer | string> | Iterable<Buffer | string> =
      typeof data === 'string' || Buffer.isBuffer(data) ? [data] : data;
    for await (const c of chunks) {
      const b = typeof c === 'string' ? Buffer.from(c) : c;
      for (let off = 0; off < b.length && !failed; off += CHUNK) {
        if (!conn.send(T.FDATA, id, b.subarray(off, off + CHUNK))) await conn.drained();
      }
      if (failed) break;
    }
    if (!failed) conn.send(T.FEND, id);
  };
  return send().then(
    () => result,
    (err) => {
      // the source failed: the agent drops the temporary file
      conn.unregister(id);
      conn.send(T.CANCEL, id);
      throw err;
    },
  );
}

export async function stat(conn: AgentConnection, path: string, opts: { cred?: AgentCred; follow?: boolean } = {}): Promise<AgentEntry> {
  const f = await conn.request(T.STAT, req(opts.cred).u32(opts.follow ? 0 : 1).str(path, 'path').done(), T.ENTRY);
  return decodeEntry(f.payload);
}

/** Entries under a directory, depth levels deep (1 = the directory's own entries). */
export function list(conn: AgentConnection, path: string, opts: { cred?: AgentCred; depth?: number } = {}): Promise<AgentEntry[]> {
  const id = conn.allocId();
  const entries: AgentEntry[] = [];
  return new Promise((resolve, reject) => {
    conn.register(id, {
      frame(f) {
        if (f.type === T.ENTRY) return void entries.push(decodeEntry(f.payload));
        conn.unregister(id);
        if (f.type === T.FEND) resolve(entries);
        else reject(f.type === T.ERROR ? errorOf(f) : new Error(`agent answered LIST with 0x${f.type.toString(16)}`));
      },
      closed: reject,
    });
    conn.send(T.LIST, id, req(opts.cred).u32(opts.depth ?? 1).str(path, 'path').done());
  });
}

/** mkdir -p; created says whether the last component was made now. */
export async function mkdir(conn: AgentConnection, path: string, opts: { cred?: AgentCred; mode?: number } = {}): Promise<{ created: boolean }> {
  const f = await conn.request(T.MKDIR, req(opts.cred).u32(opts.mode ?? 0).str(path, 'path').done(), T.OK);
  return { created: f.payload.length >= 4 && f.payload.readUInt32LE(0) !== 0 };
}

export async function rename(conn: AgentConnection, from: string, to: string, opts: { cred?: AgentCred } = {}): Promise<void> {
  await conn.request(T.RENAME, req(opts.cred).str(from, 'from').str(to, 'to').done(), T.OK);
}

/** rm -r (a symlink itself, never what it points to). */
export async function remove(conn: AgentConnection, path: string, opts: { cred?: AgentCred } = {}): Promise<void> {
  await conn.request(T.REMOVE, req(opts.cred).str(path, 'path').done(), T.OK);
}

export interface WatchEvent {
  kind: WatchEventKind;
  /** Relative to the watched directory. */
  name: string;
}

/** An inotify watch in the agent: 'event' (WatchEvent) until close(); 'end' (error?) if the connection goes. */
export class AgentWatch extends EventEmitter<{ event: [WatchEvent]; end: [AgentError | undefined] }> {
  private open = true;
  constructor(
    private readonly conn: AgentConnection,
    readonly id: number,
  ) {
    super();
  }
  close(): void {
    if (!this.open) return;
    this.open = false;
    this.conn.unregister(this.id);
    this.conn.send(T.CANCEL, this.id);
    this.emit('end', undefined);
  }
  /** internal: the connection ended */
  lost(err: AgentError): void {
    if (!this.open) return;
    this.open = false;
    this.emit('end', err);
  }
}

export function watch(conn: AgentConnection, path: string, opts: { cred?: AgentCred; recursive?: boolean } = {}): Promise<AgentWatch> {
  const id = conn.allocId();
  const w = new AgentWatch(conn, id);
  return new Promise((resolve, reject) => {
    let ready = false;
    conn.register(id, {
      frame(f) {
        if (f.type === T.EVENT) {
          const ev = decodeEvent(f.payload);
          if (ev) w.emit('event', ev);
        } else if (f.type === T.OK && !ready) {
          ready = true;
          resolve(w);
        } else if (f.type === T.ERROR && !ready) {
          conn.unregister(id);
          reject(errorOf(f));
        }
      },
      closed: (err) => (ready ? w.lost(err) : reject(err)),
    });
    conn.send(T.WATCH, id, req(opts.cred).u32(opts.recursive ? 1 : 0).str(path, 'path').done());
  });
}
