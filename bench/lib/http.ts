// A minimal JSON client over node:http with keep-alive (fetch adds ~1 ms of its own per request,
// which would be charged to the gateway). Loopback only.
import { Agent, request } from 'node:http';

export interface ApiReply<T = any> {
  status: number;
  body: T;
}

export type Api = <T = any>(method: string, path: string, body?: unknown) => Promise<ApiReply<T>>;

export function apiClient(baseUrl: string, key: string, maxSockets = 64): { api: Api; close(): void } {
  const u = new URL(baseUrl);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) throw new Error(`bench clients talk to loopback only, not ${u.hostname}`);
  const agent = new Agent({ keepAlive: true, maxSockets });
  const api: Api = (method, path, body) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = request(
        {
          host: u.hostname.replace(/^\[|\]$/g, ''),
          port: u.port,
          method,
          path,
          agent,
          headers: {
            authorization: `Bearer ${key}`,
            ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : { 'content-length': '0' }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              /* keep the text */
            }
            resolve({ status: res.statusCode ?? 0, body: parsed as any });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  return { api, close: () => agent.destroy() };
}

/** Throw with the reply in the message unless the status is one of `ok`. */
export function expect<T>(r: ApiReply<T>, ok: number[], what: string): T {
  if (!ok.includes(r.status)) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
