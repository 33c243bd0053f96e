// The thin edge: HTTP in, one gateway call, HTTP out. Errors of every kind are mapped here and
// only here: CoppiceError -> its status, anything else -> 500 (logged, never leaked as a stack).
import type { Socket } from 'node:net';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Gateway } from '../actors/gateway.ts';
import { badRequest, CoppiceError } from '../errors.ts';
import { createKeyCheck, presentedKey } from '../http/auth.ts';
import { readJson } from '../http/body.ts';
import { errorBody, toHttpError } from '../http/errors.ts';
import { Router, type Ctx, type Reply } from '../http/router.ts';
import { poolRoutes } from './routes/pool.ts';
import { sandboxRoutes } from './routes/sandboxes.ts';
import { systemRoutes } from './routes/system.ts';
import { templateRoutes } from './routes/templates.ts';
import { createExecWebSocket, rejectUpgrade } from './ws/exec.ts';
import { createDevtools, type Devtools } from './devtools/index.ts';
import type { Mount } from '../http/mount.ts';

export interface EdgeOptions {
  apiKeys: string[];
  /** Largest accepted request body in bytes (413 beyond). */
  bodyLimit?: number;
  /** Surfaces mounted on this server (app.ts mounts E2B's). */
  mounts?: Mount[];
  /** Keys that may read /metrics and nothing else (besides the API keys). */
  metricsKeys?: string[];
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
  const keyOk = createKeyCheck(opts.apiKeys);
  const authorized = (req: IncomingMessage) => keyOk(presentedKey(req));
  const metricsKeyOk = createKeyCheck(opts.metricsKeys ?? []);
  systemRoutes(router, gw, (req) => authorized(req) || metricsKeyOk(presentedKey(req)));
  templateRoutes(router, gw);
  sandboxRoutes(router, gw);
  poolRoutes(router, gw);
  const execWs = createExecWebSocket(gw, router, authorized);
  const devtools = createDevtools(gw, router, authorized);
  const mounts = opts.mounts ?? [];
  for (const m of mounts) m.routes?.(router);
  const bodyLimit = opts.bodyLimit ?? 32 * 1024 * 1024;

  const server = createServer((req, res) => {
    const started = process.hrtime.bigint();
    let routeLabel = 'unmatched';
    const finish = (status: number, failure?: { code: string; message: string }) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const labels = { method: req.method ?? '?', route: routeLabel, status: String(status) };
      gw.metrics.httpRequests.inc(labels);
      gw.metrics.httpSeconds.observe(labels, ms / 1000);
      // One line per request; a refused or failed one carries its error code and message.
      const line = { method: req.method, route: routeLabel, path: pathOf(req), status, ms: Math.round(ms * 10) / 10, ...(failure ? { code: failure.code, error: failure.message } : {}) };
      if (status >= 500) gw.log.warn(line, 'request failed');
      else gw.log.info(line, 'request');
    };
    const owner = mounts.find((m) => m.owns?.(req));
    if (owner?.serve) {
      routeLabel = owner.name;
      res.once('close', () => finish(res.statusCode));
      void owner.serve(req, res);
      return;
    }
    handle(req, res)
      .then((reply) => {
        if (reply === 'handled') return finish(res.statusCode);
        let out = reply;
        for (const m of mounts) if (m.decorate) out = m.decorate(`${req.method} ${routeLabel}`, out);
        send(res, out.status, out.body, out.headers);
        finish(out.status);
      })
      .catch((err: unknown) => {
        const { error: e, status, unexpected } = toHttpError(err);
        if (unexpected) gw.log.error({ err, route: routeLabel }, 'unhandled error');
        send(res, status, errorBody(e), e.retryAfterS ? { 'retry-after': String(e.retryAfterS) } : {});
        finish(status, e);
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
      const ctx: Ctx = { req, res, params: m.params, query: url.searchParams, body: (limit) => readJson(req, Math.min(limit ?? bodyLimit, bodyLimit)) };
      return m.route.handler(ctx);
    }
  });
  server.keepAliveTimeout = 65_000;
  // Requests Node's parser rejects (bad request line, bad headers, bad chunking, headers too large)
  // and unsupported `Expect:` values never reach the router; Node's defaults answer them with no
  // body. Answer with the usual JSON error instead.
  const refused = new WeakSet<object>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // More bytes of a request already refused (its body still arriving): let them drain, so the
    // client reads our answer instead of a reset; the socket closes when the client is done.
    if (refused.has(socket)) return;
    const inFlight = (socket as typeof socket & { _httpMessage?: ServerResponse })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) return void socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? 413 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const error = status === 408 ? 'timeout' : status === 413 ? 'payload_too_large' : 'bad_request';
    gw.metrics.httpRequests.inc({ method: '?', route: 'unparsed', status: String(status) });
    // A HEAD request gets the headers only (the client's parser would take a body for the next response).
    const isHead = (err as { rawPacket?: Buffer }).rawPacket?.subarray(0, 5).toString('latin1') === 'HEAD ';
    refused.add(socket);
    (socket as Partial<Socket>).setTimeout?.(10_000, () => socket.destroy());
    writeRaw(socket, status, { code: status, error, message: `malformed HTTP request (${err.code ?? err.message})` }, isHead);
  });
  server.on('checkExpectation', (req, res) => {
    send(res, 417, { code: 417, error: 'bad_request', message: `unsupported Expect: ${String(req.headers.expect).slice(0, 100)} (only 100-continue)` }, { connection: 'close' });
  });
  // WebSocket endpoints (a mount's, e.g. a sandbox port; streaming exec, devtools inspection); any other upgrade is a 404.
  server.on('upgrade', (req, socket, head) => {
    if (mounts.some((m) => m.upgrade?.(req, socket, head))) return;
    if (!execWs.handleUpgrade(req, socket, head) && !devtools.handleUpgrade(req, socket, head)) rejectUpgrade(socket, new CoppiceError('not_found', `no WebSocket endpoint at ${pathOf(req)}`));
  });
  return { server, router, authorized, devtools };
}

/** A whole HTTP/1.1 response written on a socket the HTTP server has given up on; then close. */
function writeRaw(socket: { end(chunk: string): void }, status: number, body: object, headOnly = false): void {
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${headOnly ? '' : text}`,
  );
}

function pathOf(req: IncomingMessage): string {
  const u = req.url ?? '/';
  const q = u.indexOf('?');
  return q < 0 ? u : u.slice(0, q);
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
