// Ports inside sandboxes, reachable through the gateway (what E2B's `getHost(port)` and the code
// interpreter rely on). Two ways to name one:
//   - host-based: `Host: <port>-<sandboxID>.<domain>` (--domain; e.g. `localhost`, whose
//     subdomains browsers resolve to loopback, or a wildcard DNS name in front of the gateway);
//   - E2B's headers on the gateway's own URL: `E2b-Sandbox-Id` + `E2b-Sandbox-Port` (any port
//     but envd's 49983, which stays with the E2B mount).
// Traffic to a port is public, as E2B's default (`allowPublicTraffic`): the gateway's API key
// is never forwarded into the sandbox, nor the E2B access tokens.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Gateway } from '../actors/gateway.ts';
import { presentedKey } from '../http/auth.ts';
import type { Mount } from '../http/mount.ts';
import { portClosedBody, proxyHttp, proxyUpgrade, type PortTarget } from './proxy.ts';

/** envd's port in E2B's numbering: host-routed requests for it go to the E2B mount. */
export const ENVD_PORT = 49983;

export interface PortsOptions {
  /** Host-based routing under this domain (`<port>-<id>.<domain>`); absent = header form only. */
  domain?: string;
  /** The mount that serves envd (requests for ENVD_PORT are handed to it). */
  envd?: Mount;
  keyOk(presented: string | undefined): boolean;
}

export interface Ports extends Mount {
  /** Take an upgrade for a sandbox port; false when the request names none. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  /** The host name of a sandbox port (for create/connect replies' `domain`). */
  readonly domain: string | null;
}

const header = (req: IncomingMessage, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

export function createPorts(gw: Gateway, opts: PortsOptions): Ports {
  const domain = opts.domain?.toLowerCase().replace(/\.$/, '');
  const hostRe = domain ? new RegExp(`^(\\d{1,5})-([a-z0-9]{10})\\.${domain.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?::\\d{1,5})?$`) : null;

  /** The sandbox and port a request names, or null when it names none. */
  const named = (req: IncomingMessage): { sandboxId: string; port: number; byHost: boolean } | null => {
    const m = hostRe?.exec((header(req, 'host') ?? '').toLowerCase());
    if (m) return { sandboxId: m[2]!, port: Number(m[1]), byHost: true };
    const id = header(req, 'e2b-sandbox-id');
    const port = header(req, 'e2b-sandbox-port');
    if (id === undefined || port === undefined || !/^\d{1,5}$/.test(port) || Number(port) === ENVD_PORT) return null;
    return { sandboxId: id, port: Number(port), byHost: false };
  };

  /** Headers that stay at the gateway: routing, E2B tokens, and any gateway key. */
  const dropped = (req: IncomingMessage): Set<string> => {
    const drop = new Set(['e2b-sandbox-id', 'e2b-sandbox-port', 'x-access-token', 'e2b-traffic-access-token', 'x-api-key']);
    if (req.headers.authorization && opts.keyOk(presentedKey(req))) drop.add('authorization');
    return drop;
  };

  /** The running sandbox behind a name, or the reason there is none (E2B's 502 shape). */
  const resolve = (n: { sandboxId: string; port: number }): PortTarget | { refused: string } => {
    if (n.port < 1 || n.port > 65535) return { refused: 'The port is not a valid TCP port' };
    let view;
    try {
      view = gw.view(n.sandboxId);
    } catch {
      return { refused: 'The sandbox was not found' };
    }
    if (view.state === 'paused') return { refused: 'The sandbox is paused' };
    if (view.state !== 'running' || !view.ip) return { refused: `The sandbox is ${view.state}` };
    return { sandboxId: n.sandboxId, ip: view.ip, port: n.port };
  };

  const refuse = (res: ServerResponse, n: { sandboxId: string; port: number }, message: string) => {
    const body = JSON.stringify(portClosedBody(n, message));
    res.writeHead(502, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }).end(body);
  };

  return {
    name: 'sandbox port',
    domain: domain ?? null,
    owns: (req) => named(req) !== null,
    async serve(req, res) {
      const n = named(req)!;
      if (n.byHost && n.port === ENVD_PORT && opts.envd?.serve) {
        // envd by host name (signed upload/download URLs carry no sandbox header).
        req.headers['e2b-sandbox-id'] = n.sandboxId;
        return opts.envd.serve(req, res);
      }
      const t = resolve(n);
      if ('refused' in t) return refuse(res, n, t.refused);
      await proxyHttp(req, res, t, dropped(req));
    },
    upgrade(req, socket, head) {
      const n = named(req);
      if (!n) return false;
      const t = resolve(n);
      if ('refused' in t) {
        const body = JSON.stringify(portClosedBody(n, t.refused));
        socket.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
        return true;
      }
      proxyUpgrade(req, socket, head, t, dropped(req));
      return true;
    },
  };
}
