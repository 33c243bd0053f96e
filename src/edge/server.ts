// The thin edge: HTTP in, one gateway call, HTTP out. Errors of every kind are mapped here and
// only here: CoppiceError -> its status, anything else -> 500 (logged, never leaked as a stack).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Gateway } from '../actors/gateway.ts';
import { badRequest, CoppiceError } from '../errors.ts';
import { createKeyCheck, presentedKey } from './auth.ts';
import { Router, type Ctx, type Reply } from './router.ts';
import { poolRoutes } from './routes/pool.ts';
import { sandboxRoutes } from './routes/sandboxes.ts';
import { systemRoutes } from './routes/system.ts';
import { templateRoutes } from './routes/templates.ts';
import { createExecWebSocket, rejectUpgrade } from './ws/exec.ts';
import { createDevtools, type Devtools } from './devtools/index.ts';

export interface EdgeOptions {
  apiKeys: string[];
  /** Largest accepted request body in bytes (413 beyond). */
  bodyLimit?: number;
}

export interface Edge {
  server: Server;
  router: Router;
  /** Authenticate a raw request (used by WebSocket upgrades too). */
  authorized(req: IncomingMessage): boolean;
  /** The devtools page, tree and inspection stream (src/edge/devtools). */
  devtools: Devtools;
}

export function createEdge(gw: Gateway, opts: EdgeOptions): Edge {
  const router = new Router();
  systemRoutes(router, gw);
  templateRoutes(router, gw);
  sandboxRoutes(router, gw);
  poolRoutes(router, gw);
  const keyOk = createKeyCheck(opts.apiKeys);
  const authorized = (req: IncomingMessage) => keyOk(presentedKey(req));
  const execWs = createExecWebSocket(gw, router, authorized);
  const devtools = createDevtools(gw, router, authorized);
  const bodyLimit = opts.bodyLimit ?? 32 * 1024 * 1024;

  const server = createServer((req, res) => {
    const started = process.hrtime.bigint();
    let routeLabel = 'unmatched';
    const finish = (status: number) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      gw.metrics.httpRequests.inc({ method: req.method ?? '?', route: routeLabel, status: String(status) });
      gw.log.info({ method: req.method, route: routeLabel, path: pathOf(req), status, ms: Math.round(ms * 10) / 10 }, 'request');
    };
    handle(req, res)
      .then((reply) => {
        if (reply === 'handled') return finish(res.statusCode);
        send(res, reply.status, reply.body, reply.headers);
        finish(reply.status);
      })
      .catch((err: unknown) => {
        const e = err instanceof CoppiceError ? err : internal(err);
        if (!(err instanceof CoppiceError)) gw.log.error({ err, route: routeLabel }, 'unhandled error');
        const retryAfter = (e as { retryAfterS?: number }).retryAfterS;
        send(res, e.status, e.toJSON(), retryAfter ? { 'retry-after': String(retryAfter) } : {});
        finish(e.status);
      });

    async function handle(req: IncomingMessage, res: ServerResponse): Promise<Reply> {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://gateway');
      } catch {
        throw badRequest('url', 'malformed request URL');
      }
      const m = router.match(req.method ?? 'GET', url.pathname);
      if (!m) throw new CoppiceError('not_found', `no route ${req.method} ${url.pathname}`);
      if ('allowed' in m) {
        throw new CoppiceError('method_not_allowed', `method ${req.method} not allowed on ${url.pathname} (allowed: ${m.allowed.join(', ')})`);
      }
      routeLabel = m.route.pattern;
      if (!m.route.open && !authorized(req)) {
        throw new CoppiceError('unauthorized', 'missing or invalid API key (Authorization: Bearer <key> or X-API-KEY)');
      }
      if (!m.route.open && req.method !== 'GET') gw.assertServing();
      const ctx: Ctx = { req, res, params: m.params, query: url.searchParams, body: () => readJson(req, bodyLimit) };
      return m.route.handler(ctx);
    }
  });
  server.keepAliveTimeout = 65_000;
  // WebSocket endpoints (streaming exec, devtools inspection); any other upgrade is a 404.
  server.on('upgrade', (req, socket, head) => {
    if (!execWs.handleUpgrade(req, socket, head) && !devtools.handleUpgrade(req, socket, head)) rejectUpgrade(socket, new CoppiceError('not_found', `no WebSocket endpoint at ${pathOf(req)}`));
  });
  return { server, router, authorized, devtools };
}

function pathOf(req: IncomingMessage): string {
  const u = req.url ?? '/';
  const q = u.indexOf('?');
  return q < 0 ? u : u.slice(0, q);
}

function internal(err: unknown): CoppiceError {
  return new CoppiceError('internal', 'internal error', { cause: err });
}

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  if (status === 204 || body === undefined) {
    res.writeHead(status, { 'content-length': '0', ...headers }).end();
    return;
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/** Read the body up to `limit` bytes and parse it as JSON; an empty body is `undefined`. */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new CoppiceError('payload_too_large', `body larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      req.destroy();
      throw new CoppiceError('payload_too_large', `body larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw badRequest('body', `malformed JSON (${(err as Error).message})`);
  }
}
