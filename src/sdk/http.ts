// The SDK's transport: gateway URL + key resolution, one JSON call helper, one NDJSON reader.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { AuthenticationError, ConnectionError, errorFromBody } from './errors.ts';

export const DEFAULT_URL = 'http://127.0.0.1:3000';

export interface ClientOptions {
  /** Gateway base URL, e.g. http://127.0.0.1:3000 (default: COPPICE_URL, else http://127.0.0.1:3000). */
  url?: string;
  /** API key (default: COPPICE_API_KEY). */
  apiKey?: string;
  /** Per-request deadline for REST calls in ms (default 120 s). */
  requestTimeoutMs?: number;
  /**
   * The gateway's --domain, for getHost(port) (default: COPPICE_DOMAIN). Ports are reached as
   * `<port>-<sandboxID>.<domain>` on the gateway's own address (see the gateway's docs/ports.md).
   */
  domain?: string;
}

export interface Conn {
  url: string;
  apiKey: string;
  timeoutMs: number;
  domain?: string;
}

export function resolveConn(opts: ClientOptions = {}): Conn {
  const url = (opts.url || process.env.COPPICE_URL || DEFAULT_URL).replace(/\/+$/, '');
  const apiKey = opts.apiKey || process.env.COPPICE_API_KEY;
  if (!apiKey) throw new AuthenticationError(401, 'unauthorized', 'no API key: pass apiKey (--key) or set COPPICE_API_KEY');
  if (!/^https?:\/\//.test(url)) throw new ConnectionError(`gateway URL must start with http:// or https:// (got ${JSON.stringify(url)})`);
  const domain = opts.domain || process.env.COPPICE_DOMAIN || undefined;
  return { url, apiKey, timeoutMs: opts.requestTimeoutMs ?? 120_000, ...(domain ? { domain } : {}) };
}

/** A JSON request (typed ConnectionError when there is no answer); the caller reads the Response. */
export function send(conn: Conn, method: string, path: string, body: unknown, accept?: string, timeoutMs = conn.timeoutMs): Promise<Response> {
  return request(conn, method, path, {
    headers: {
      authorization: `Bearer ${conn.apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(accept ? { accept } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    timeoutMs,
  });
}

/**
 * Any request: the caller's headers and body as they are; the answer as a standard Response.
 * node:http rather than fetch: fetch refuses a list of ports outright (WHATWG's "bad ports": 1, 9,
 * 6000, 6665-6669, ...), and a gateway may well listen on one of them.
 */
export function request(
  conn: Conn,
  method: string,
  path: string,
  init: { headers: Record<string, string>; body?: string | Uint8Array; timeoutMs?: number },
): Promise<Response> {
  const timeoutMs = init.timeoutMs ?? conn.timeoutMs;
  const where = `${method} ${conn.url}${path.replace(/\?.*/, '')}`;
  return new Promise((resolve, reject) => {
    const body = init.body === undefined ? undefined : typeof init.body === 'string' ? Buffer.from(init.body, 'utf8') : init.body;
    const headers = { ...init.headers, ...(body ? { 'content-length': String(body.byteLength) } : {}) };
    const url = new URL(conn.url + path);
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method, headers });
    // The deadline covers the whole exchange, the body included.
    const timer =
      timeoutMs > 0
        ? setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { name: 'TimeoutError' })), timeoutMs)
        : undefined;
    timer?.unref();
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(new ConnectionError(`${where}: ${err.message}`, { cause: err }));
    });
    req.on('response', (res) => {
      res.on('close', () => clearTimeout(timer));
      const empty = res.statusCode === 204 || res.statusCode === 304 || method === 'HEAD';
      if (empty) res.resume();
      const h = new Headers();
      for (const [k, v] of Object.entries(res.headers)) for (const x of Array.isArray(v) ? v : v === undefined ? [] : [v]) h.append(k, x);
      resolve(
        new Response(empty ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>), {
          status: res.statusCode ?? 500,
          statusText: res.statusMessage ?? '',
          headers: h,
        }),
      );
    });
    req.end(body);
  });
}

async function failure(res: Response): Promise<never> {
  const text = await res.text().catch(() => '');
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // Not the gateway's JSON (a proxy's page, another server at that URL): say so, not the page.
    const type = (res.headers.get('content-type') ?? 'no content type').split(';')[0];
    parsed = { message: `HTTP ${res.status} ${res.statusText || ''}`.trim() + ` (${type}, not a coppice gateway's answer)` };
  }
  throw errorFromBody(res.status, parsed);
}

/** One REST call: JSON in, JSON out (undefined for 204), typed error for any non-2xx. */
export async function call<T>(conn: Conn, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
  const res = await send(conn, method, path, body, undefined, timeoutMs);
  if (!res.ok) return failure(res);
  const text = await res.text();
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    return text as T;
  }
}

/** A call that answers with NDJSON: each parsed line goes to `onLine` as it arrives. */
export async function callNdjson(conn: Conn, method: string, path: string, body: unknown, onLine: (line: unknown) => void, timeoutMs?: number): Promise<void> {
  const res = await send(conn, method, path, body, 'application/x-ndjson', timeoutMs);
  if (!res.ok) return failure(res);
  if (!res.body) return;
  const decoder = new TextDecoder();
  let buf = '';
  const emit = (line: string) => {
    if (!line.trim()) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new ConnectionError(`${method} ${path}: not NDJSON: ${line.slice(0, 200)}`);
    }
    onLine(parsed);
  };
  const chunks = (res.body as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  for (;;) {
    let r: IteratorResult<Uint8Array>;
    try {
      r = await chunks.next();
    } catch (err) {
      throw new ConnectionError(`${method} ${path}: stream cut off: ${(err as Error).message}`, { cause: err });
    }
    if (r.done) break;
    buf += decoder.decode(r.value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      emit(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  }
  emit(buf + decoder.decode());
}
