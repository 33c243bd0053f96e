// HTTP below fetch and http.request: arbitrary bytes on a fresh TCP connection, and a small parser
// for the one response that comes back (status line, headers, body by content-length, chunked, or
// until close). For requests a well-behaved client library refuses to send.
import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export type RawResult = { ok: true; res: RawResponse } | { ok: false; error: string; partial: Buffer };

/**
 * Send `bytes` (all at once, or in the given pieces) and read one response. `endAfterWrite`
 * half-closes our side after writing (so a server waiting for more body sees EOF).
 */
export function rawExchange(
  port: number,
  bytes: Buffer | Buffer[],
  opts: { timeoutMs?: number; endAfterWrite?: boolean; host?: string } = {},
): Promise<RawResult> {
  return new Promise((resolve) => {
    const sock = connect({ host: opts.host ?? '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (r: RawResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout', partial: Buffer.concat(chunks) }), opts.timeoutMs ?? 10_000);
    sock.on('connect', () => {
      const parts = Array.isArray(bytes) ? bytes : [bytes];
      for (const p of parts) sock.write(p);
      if (opts.endAfterWrite) sock.end();
    });
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      const r = parseResponse(Buffer.concat(chunks), false);
      if (r) finish({ ok: true, res: r });
    });
    const onEnd = () => {
      const buf = Buffer.concat(chunks);
      const r = parseResponse(buf, true);
      finish(r ? { ok: true, res: r } : { ok: false, error: buf.length ? 'unparseable response' : 'closed without a response', partial: buf });
    };
    sock.on('end', onEnd);
    sock.on('close', onEnd);
    sock.on('error', (err) => {
      const buf = Buffer.concat(chunks);
      const r = parseResponse(buf, true);
      finish(r ? { ok: true, res: r } : { ok: false, error: (err as NodeJS.ErrnoException).code ?? err.message, partial: buf });
    });
  });
}

/** One complete response from the front of `buf`, or null if more bytes are needed (unless `eof`). */
export function parseResponse(buf: Buffer, eof: boolean): RawResponse | null {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const head = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
  if (!m) return null;
  const status = Number(m[1]);
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  // 1xx (100 Continue) is not the response we wait for: skip it.
  if (status >= 100 && status < 200) return parseResponse(buf.subarray(end + 4), eof);
  const rest = buf.subarray(end + 4);
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (rest.length < n) return eof ? { status, headers, body: rest } : null;
    return { status, headers, body: rest.subarray(0, n) };
  }
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const body: Buffer[] = [];
    let at = 0;
    for (;;) {
      const nl = rest.indexOf('\r\n', at);
      if (nl < 0) return eof ? { status, headers, body: Buffer.concat(body) } : null;
      const size = parseInt(rest.subarray(at, nl).toString('latin1'), 16);
      if (!Number.isFinite(size)) return { status, headers, body: Buffer.concat(body) };
      if (size === 0) return { status, headers, body: Buffer.concat(body) };
      if (rest.length < nl + 2 + size + 2) return eof ? { status, headers, body: Buffer.concat(body) } : null;
      body.push(rest.subarray(nl + 2, nl + 2 + size));
      at = nl + 2 + size + 2;
    }
  }
  // Neither: the body runs to the end of the connection (or there is none).
  if (status === 204 || status === 304) return { status, headers, body: Buffer.alloc(0) };
  return eof ? { status, headers, body: rest } : null;
}
