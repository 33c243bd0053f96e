// Frames and payloads of the agent protocol (see protocol.ts): pure functions over Buffers.
import { HEADER, MAX_ARGS, MAX_GROUPS, MAX_PAYLOAD, ENTRY_FIXED, EVENT_KINDS, type WatchEventKind } from './protocol.ts';

export interface Frame {
  type: number;
  id: number;
  payload: Buffer;
}

export function encodeHeader(type: number, id: number, len: number): Buffer {
  if (len > MAX_PAYLOAD) throw new RangeError(`agent frame payload of ${len} bytes is over ${MAX_PAYLOAD}`);
  const h = Buffer.alloc(HEADER);
  h.writeUInt32LE(len, 0);
  h.writeUInt8(type, 4);
  h.writeUInt32LE(id >>> 0, 8);
  return h;
}

export class ProtocolError extends Error {}

/** Splits a byte stream into frames; throws ProtocolError on a stream that cannot be ours. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Frame[] = [];
    let off = 0;
    while (this.buf.length - off >= HEADER) {
      const len = this.buf.readUInt32LE(off);
      if (len > MAX_PAYLOAD) throw new ProtocolError(`agent sent a frame of ${len} bytes (limit ${MAX_PAYLOAD})`);
      if (this.buf[off + 5] || this.buf[off + 6] || this.buf[off + 7]) {
        throw new ProtocolError('agent sent a frame header with reserved bytes set');
      }
      if (this.buf.length - off - HEADER < len) break;
      frames.push({
        type: this.buf[off + 4],
        id: this.buf.readUInt32LE(off + 8),
        payload: this.buf.subarray(off + HEADER, off + HEADER + len),
      });
      off += HEADER + len;
    }
    // keep only the unfinished frame (a copy, so the delivered payloads do not pin a large buffer)
    this.buf = off === this.buf.length ? Buffer.alloc(0) : off ? Buffer.from(this.buf.subarray(off)) : this.buf;
    return frames;
  }
}

/** The user a request acts as inside the sandbox. */
export interface AgentCred {
  uid: number;
  gid: number;
  groups?: number[];
}

export const ROOT: AgentCred = { uid: 0, gid: 0, groups: [] };

/** Little-endian payload writer. */
export class PayloadWriter {
  private parts: Buffer[] = [];
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  str(s: string, field: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.includes(0)) throw new RangeError(`${field}: contains a NUL byte`);
    this.parts.push(b, Buffer.alloc(1));
    return this;
  }
  cred(c: AgentCred): this {
    const groups = c.groups ?? [];
    if (groups.length > MAX_GROUPS) throw new RangeError(`groups: at most ${MAX_GROUPS}`);
    for (const [k, v] of [['uid', c.uid], ['gid', c.gid]] as const) {
      if (!Number.isInteger(v) || v < 0 || v >= 0xffffffff) throw new RangeError(`${k}: not a valid id: ${v}`);
    }
    this.u32(c.uid).u32(c.gid).u16(groups.length).u16(0);
    for (const g of groups) this.u32(g);
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export interface StartSpec {
  argv: string[];
  env?: string[];
  cwd?: string;
  cred?: AgentCred;
  /** A terminal of this size (stdout and stderr are then one stream). */
  pty?: { cols: number; rows: number };
}

export function encodeStart(s: StartSpec): Buffer {
  const env = s.env ?? [];
  if (s.argv.length === 0 || s.argv[0] === '') throw new RangeError('argv: needs a program');
  if (s.argv.length > MAX_ARGS) throw new RangeError(`argv: at most ${MAX_ARGS} entries`);
  if (env.length > MAX_ARGS) throw new RangeError(`env: at most ${MAX_ARGS} entries`);
  const cwd = s.cwd ?? '/';
  if (!cwd.startsWith('/')) throw new RangeError('cwd: must be absolute');
  const w = new PayloadWriter().cred(s.cred ?? ROOT);
  if (s.pty) {
    for (const [k, v] of [['cols', s.pty.cols], ['rows', s.pty.rows]] as const) {
      if (!Number.isInteger(v) || v < 1 || v > 0xffff) throw new RangeError(`pty.${k}: 1..65535`);
    }
    w.u16(s.pty.cols).u16(s.pty.rows);
  } else {
    w.u16(0).u16(0);
  }
  w.u16(s.argv.length).u16(env.length).str(cwd, 'cwd');
  s.argv.forEach((a, i) => w.str(a, `argv[${i}]`));
  env.forEach((e, i) => w.str(e, `env[${i}]`));
  const out = w.done();
  if (out.length > MAX_PAYLOAD) throw new RangeError(`argv+env: over ${MAX_PAYLOAD} bytes`);
  return out;
}

/** Reads NUL-terminated strings and integers; throws ProtocolError past the end. */
export class PayloadReader {
  off = 0;
  constructor(private readonly b: Buffer) {}
  private need(n: number): void {
    if (this.b.length - this.off < n) throw new ProtocolError('agent payload is too short');
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.b.readInt32LE(this.off);
    this.off += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.b.readBigUInt64LE(this.off);
    this.off += 8;
    return v;
  }
  str(): string {
    const nul = this.b.indexOf(0, this.off);
    if (nul < 0) throw new ProtocolError('agent payload string is not terminated');
    const s = this.b.toString('utf8', this.off, nul);
    this.off = nul + 1;
    return s;
  }
}

export interface AgentEntry {
  kind: 'file' | 'dir' | 'symlink' | 'other';
  /** Permission bits (07777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  path: string;
  /** Symlink target ('' unless a symlink). */
  target: string;
}

const KINDS: Record<string, AgentEntry['kind']> = { f: 'file', d: 'dir', l: 'symlink', o: 'other' };

export function decodeEntry(p: Buffer): AgentEntry {
  if (p.length < ENTRY_FIXED) throw new ProtocolError('agent ENTRY is too short');
  const r = new PayloadReader(p);
  r.off = 4;
  const mode = r.u32();
  const uid = r.u32();
  const gid = r.u32();
  const size = Number(r.u64());
  const mtimeNs = r.u64();
  return { kind: KINDS[String.fromCharCode(p[0])] ?? 'other', mode, uid, gid, size, mtimeNs, path: r.str(), target: r.str() };
}

export function decodeError(p: Buffer): { errno: number; message: string } {
  const r = new PayloadReader(p);
  const errno = r.u32();
  let message = '';
  try {
    message = r.str();
  } catch {
    message = p.subarray(4).toString('utf8');
  }
  return { errno, message };
}

export function decodeEvent(p: Buffer): { kind: WatchEventKind; name: string } | null {
  const r = new PayloadReader(p);
  const kind = EVENT_KINDS[r.u32() as keyof typeof EVENT_KINDS];
  const name = r.str();
  return kind ? { kind, name } : null;
}
