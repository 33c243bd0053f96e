// Devtools on the gateway itself: no internet, no build step.
//
//   GET /devtools            the page (HTML shell, open: it contains no data; everything it shows
//                            comes from the keyed endpoints below, with the key the user types in)
//   GET /devtools/app.js     its script, GET /devtools/app.css its style (open, static)
//   GET /ui                  302 to /devtools
//   GET /devtools/tree       the live actor tree as JSON (key required); ?sandbox=<id> filters,
//                            ?compact=1 leaves out empty shards
//   GET /devtools/ws         WebSocket: the inspection stream (key required; see ./protocol.ts)
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { z } from 'zod';
import type { Gateway } from '../../actors/gateway.ts';
import { badRequest, CoppiceError } from '../../errors.ts';
import type { Router } from '../../http/router.ts';
import { errorBody } from '../../http/errors.ts';
import { guardUpgrade, offeredProtocols, upgradeAuth, upgradeOnlyRoute, upgradePath, wsServer } from '../ws/upgrade.ts';
import { DEFAULT_LIMITS, DevtoolsHub, Outbox, type HubClient } from './hub.ts';
import { DEVTOOLS_WS_PROTOCOL, type DevtoolsMessage, type OutboxLimits } from './protocol.ts';
import { buildTree } from './tree.ts';

export { DevtoolsHub, Outbox } from './hub.ts';
export { buildTree } from './tree.ts';
export type { Tree, ActorNode } from './tree.ts';
export { DEVTOOLS_WS_PROTOCOL } from './protocol.ts';

export interface DevtoolsOptions {
  limits?: Partial<OutboxLimits>;
  pingMs?: number;
}

export interface Devtools {
  hub: DevtoolsHub;
  /** Handles the upgrade if the path is ours (true), else leaves the socket alone (false). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  readonly clients: Set<WebSocket>;
  close(): void;
}

const WS_PATH = '/devtools/ws';
const STATIC_DIR = join(import.meta.dirname, '..', 'static', 'devtools');
const sandboxId = z.string().regex(/^[a-z0-9]{10}$/, 'must be a sandbox id');
const clientMessage = z.discriminatedUnion('type', [
  z.object({ type: z.literal('filter'), sandbox: sandboxId.nullable() }).strict(),
  z.object({ type: z.literal('tree') }).strict(),
]);

/** The page may talk to this origin only; it is never framed, never cached, leaks no referrer. */
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export function createDevtools(
  gw: Gateway,
  router: Router,
  authorized: (req: IncomingMessage) => boolean,
  opts: DevtoolsOptions = {},
): Devtools {
  const limits: OutboxLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const hub = new DevtoolsHub(gw);
  const asset = (name: string) => readFileSync(join(STATIC_DIR, name), 'utf8');
  const page = asset('index.html');
  const script = asset('app.js');
  const style = asset('app.css');
  const count = (status: number) => gw.metrics.httpRequests.inc({ method: 'GET', route: WS_PATH, status: String(status) });

  router
    .on('GET', '/devtools', () => ({ status: 200, body: page, headers: { ...PAGE_HEADERS, 'content-type': 'text/html; charset=utf-8' } }), { open: true })
    .on('GET', '/devtools/app.js', () => ({ status: 200, body: script, headers: { ...PAGE_HEADERS, 'content-type': 'text/javascript; charset=utf-8' } }), { open: true })
    .on('GET', '/devtools/app.css', () => ({ status: 200, body: style, headers: { ...PAGE_HEADERS, 'content-type': 'text/css; charset=utf-8' } }), { open: true })
    .on('GET', '/ui', () => ({ status: 302, body: '', headers: { location: '/devtools' } }), { open: true })
    .on('GET', '/devtools/tree', (ctx) => {
      const sandbox = ctx.query.get('sandbox');
      if (sandbox !== null && !sandboxId.safeParse(sandbox).success) throw badRequest('sandbox', 'must be a sandbox id');
      const compact = ['1', 'true'].includes(ctx.query.get('compact') ?? '');
      return { status: 200, body: buildTree(gw, { sandbox, compact }), headers: { 'cache-control': 'no-store' } };
    })
;
  upgradeOnlyRoute(router, WS_PATH);

  const wss = wsServer(DEVTOOLS_WS_PROTOCOL, 64 * 1024);
  const keyOk = upgradeAuth(authorized);

  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): boolean => {
    const pathname = upgradePath(req);
    if (pathname === null) return false;
    if (pathname !== WS_PATH && pathname !== `${WS_PATH}/`) return false;
    const { refuse, refused } = guardUpgrade(req, socket, { route: WS_PATH, keyOk, count, log: gw.log });
    if (refused) return true;
    if (!offeredProtocols(req).includes(DEVTOOLS_WS_PROTOCOL)) {
      refuse(new CoppiceError('bad_request', `offer the subprotocol ${DEVTOOLS_WS_PROTOCOL}`));
      return true;
    }
    if (gw.lifecycle === 'stopped') {
      refuse(new CoppiceError('draining', 'gateway is stopped'));
      return true;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      count(101);
      session(ws);
    });
    return true;
  };

  const session = (ws: WebSocket) => {
    const client: HubClient = { filter: null, outbox: new Outbox(ws, limits, () => hub.treeMessage(client.filter)) };
    const opened = Date.now();
    hub.add(client);
    client.outbox.sendNow(
      JSON.stringify({ type: 'hello', protocol: DEVTOOLS_WS_PROTOCOL, seq: hub.nextSeq(), tree: buildTree(gw), limits } satisfies DevtoolsMessage),
    );
    gw.log.info({ clients: hub.clientCount }, 'devtools client connected');
    // Write completions drive the outbox; this timer is the safety net.
    const flusher = setInterval(() => client.outbox.flush(), 200);
    let alive = true;
    const pinger = setInterval(() => {
      if (!alive) return void ws.terminate();
      alive = false;
      ws.ping();
    }, opts.pingMs ?? 30_000);
    ws.on('pong', () => (alive = true));
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const error = (err: CoppiceError) => client.outbox.sendNow(JSON.stringify({ type: 'error', ...errorBody(err) }));
      if (isBinary) return error(badRequest('body', 'send JSON text frames'));
      let raw: unknown;
      try {
        raw = JSON.parse(String(data));
      } catch {
        return error(badRequest('body', 'malformed JSON'));
      }
      const r = clientMessage.safeParse(raw);
      if (!r.success) {
        const issue = r.error.issues[0]!;
        return error(badRequest(issue.path.join('.') || 'type', issue.message));
      }
      if (r.data.type === 'filter') client.filter = r.data.sandbox;
      client.outbox.sendNow(hub.treeMessage(client.filter));
    });
    ws.on('error', (err) => gw.log.debug({ err: err.message }, 'devtools ws error'));
    ws.on('close', () => {
      clearInterval(flusher);
      clearInterval(pinger);
      hub.remove(client);
      gw.log.info({ clients: hub.clientCount, ms: Date.now() - opened, sent: client.outbox.sent, dropped: client.outbox.droppedTotal }, 'devtools client left');
    });
  };

  void gw.stopped.then(() => {
    for (const ws of wss.clients) ws.close(1001, 'gateway stopped');
  });

  return {
    hub,
    handleUpgrade,
    clients: wss.clients,
    close() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
}

