// What every WebSocket endpoint of the edge shares: the upgrade's authentication (headers as REST,
// or for browsers the `coppice.key.<key>` subprotocol), its path, the server and refusals as
// plain HTTP with the usual JSON error body.
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { CoppiceError } from '../../errors.ts';
import type { Router } from '../../http/router.ts';
import { errorBody, httpStatusOf } from '../../http/errors.ts';
import { KEY_PROTOCOL_PREFIX } from '../../protocol/exec-ws.ts';

export function offeredProtocols(req: IncomingMessage): string[] {
  const header = req.headers['sec-websocket-protocol'];
  return header ? header.split(',').map((p) => p.trim()) : [];
}

function offeredKey(req: IncomingMessage): string | undefined {
  for (const p of offeredProtocols(req)) if (p.startsWith(KEY_PROTOCOL_PREFIX)) return p.slice(KEY_PROTOCOL_PREFIX.length);
  return undefined;
}

/** An upgrade is authorized by the REST headers or by a key offered as a subprotocol. */
export function upgradeAuth(authorized: (req: IncomingMessage) => boolean): (req: IncomingMessage) => boolean {
  return (req) => {
    if (authorized(req)) return true;
    const key = offeredKey(req);
    return key !== undefined && authorized({ headers: { 'x-api-key': key } } as unknown as IncomingMessage);
  };
}

/** The request's path, or null when its URL does not parse (not ours to answer). */
export function upgradePath(req: IncomingMessage): string | null {
  try {
    return new URL(req.url ?? '/', 'http://gateway').pathname;
  } catch {
    return null;
  }
}

/** A server that speaks only `protocol` (the key subprotocol is never echoed). */
export function wsServer(protocol: string, maxPayload: number): WebSocketServer {
  return new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload,
    handleProtocols: (offered) => (offered.has(protocol) ? protocol : false),
  });
}

/** A plain GET (no upgrade header) lands in the router: say what is needed. */
export function upgradeOnlyRoute(router: Router, route: string): void {
  router.on('GET', route, () => {
    throw new CoppiceError('bad_request', `${route} is a WebSocket endpoint: send "Connection: Upgrade" and "Upgrade: websocket"`);
  });
}

/** Refuse an upgrade with a plain HTTP response carrying the usual JSON error body. */
export function rejectUpgrade(socket: Duplex, err: CoppiceError): void {
  const body = JSON.stringify(errorBody(err));
  socket.end(
    `HTTP/1.1 ${httpStatusOf(err.code)} ${STATUS_CODES[httpStatusOf(err.code)] ?? ''}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

/**
 * The start of every upgrade handler once the path is ours: errors on the socket end it, a
 * refusal is counted and logged, and a missing or wrong key is refused (true = answered).
 */
export function guardUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  o: { route: string; keyOk: (req: IncomingMessage) => boolean; count: (status: number) => void; log: { info(o: object, msg?: string): void } },
): { refuse(err: CoppiceError): void; refused: boolean } {
  socket.on('error', () => socket.destroy());
  const refuse = (err: CoppiceError) => {
    o.count(httpStatusOf(err.code));
    o.log.info({ route: o.route, status: httpStatusOf(err.code), msg: err.message }, 'ws upgrade refused');
    rejectUpgrade(socket, err);
  };
  if (o.keyOk(req)) return { refuse, refused: false };
  refuse(new CoppiceError('unauthorized', 'missing or invalid API key (Authorization: Bearer <key>, X-API-KEY, or subprotocol coppice.key.<key>)'));
  return { refuse, refused: true };
}
