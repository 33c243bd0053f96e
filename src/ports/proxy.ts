// A request for a port inside a sandbox, relayed to `<sandbox ip>:<port>`: HTTP with both bodies
// streamed (never buffered), WebSocket and other upgrades as a raw byte pipe after the upgrade
// request. A client that goes away aborts the upstream request (a long-polling cell, a stream).
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface PortTarget {
  sandboxId: string;
  ip: string;
  port: number;
}

/** E2B's answer for a port nothing listens on (its SDKs turn it into their timeout error). */
export function portClosedBody(t: { sandboxId: string; port: number }, message = 'The sandbox is running but port is not open') {
  return { sandboxId: t.sandboxId, message, port: t.port, code: 502 };
}

/** Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the message's: never relayed. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);

function forwardHeaders(req: IncomingMessage, drop: Set<string>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k) && !drop.has(k)) out[k] = v;
  return out;
}

export function proxyHttp(req: IncomingMessage, res: ServerResponse, t: PortTarget, drop: Set<string>): Promise<void> {
  return new Promise((resolve) => {
    const upstream = httpRequest({ host: t.ip, port: t.port, method: req.method, path: req.url, headers: forwardHeaders(req, drop) });
    let answered = false;
    const fail = (message?: string) => {
      if (answered || res.headersSent) res.destroy();
      else {
        answered = true;
        const body = JSON.stringify(portClosedBody(t, message));
        res.writeHead(502, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }).end(body);
      }
      resolve();
    };
    upstream.on('response', (up) => {
      answered = true;
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
      res.writeHead(up.statusCode ?? 502, up.statusMessage, headers);
      up.pipe(res);
      up.on('end', () => resolve());
      up.on('error', () => res.destroy());
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => fail(err.code === 'ECONNREFUSED' ? undefined : `The sandbox's port did not answer (${err.code ?? err.message})`));
    // The client went away before the answer was complete: stop the upstream work too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
      resolve();
    });
    req.pipe(upstream);
  });
}

/** An upgrade (WebSocket): the request head is replayed upstream, then bytes flow both ways. */
export function proxyUpgrade(req: IncomingMessage, client: Duplex, head: Buffer, t: PortTarget, drop: Set<string>): void {
  const upstream: Socket = connect({ host: t.ip, port: t.port });
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  upstream.once('connect', () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (const [k, v] of Object.entries(req.headers)) {
      if (v === undefined || drop.has(k)) continue;
      for (const one of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${one}`);
    }
    upstream.write(lines.join('\r\n') + '\r\n\r\n');
    if (head.length) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.once('error', (err: NodeJS.ErrnoException) => {
    if (client.writable && !upstream.bytesRead) {
      const body = JSON.stringify(portClosedBody(t, err.code === 'ECONNREFUSED' ? undefined : `The sandbox's port did not answer (${err.code})`));
      client.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    } else close();
  });
  client.once('error', close);
  client.once('close', close);
  upstream.once('close', () => client.destroy());
}
