// Drop-in compatibility with the official `e2b` SDK (docs/e2b.md): the control plane under
// /v2/sandboxes (plus E2B's fields on coppice's shared /sandboxes replies), and the envd surface
// (Connect RPC + /files + /health) for requests carrying `E2b-Sandbox-Id`, all on the gateway's port.
import type { Gateway } from '../actors/gateway.ts';
import type { Mount } from '../http/mount.ts';
import { controlRoutes, decorateReply, type DefaultDiskMiB } from './control.ts';
import { isE2bSharedControl, serveE2bSharedControl } from './control-shared.ts';
import { createEnvd, isEnvdRequest } from './envd.ts';
import { createEnvdTokens, type EnvdTokens } from './tokens.ts';

export interface E2bOptions {
  /** The gateway's API keys: the first one keys the envd access tokens; any of them opens envd. */
  apiKeys: string[];
  keyOk(presented: string | undefined): boolean;
  /** The disk quota a backend gives a sandbox whose create named none: E2B's diskSizeMB. */
  defaultDiskMiB?: DefaultDiskMiB;
  /** --domain: returned as `domain`, so the SDKs' getHost(port) names `<port>-<id>.<domain>`. */
  domain?: string;
  /** Largest /files upload body (the gateway's --body-limit). */
  bodyLimit?: number;
}

export interface E2b extends Mount {
  readonly tokens: EnvdTokens;
}

export function createE2b(gw: Gateway, opts: E2bOptions): E2b {
  const secret = opts.apiKeys[0];
  if (!secret) throw new Error('the E2B surface needs an API key');
  const tokens = createEnvdTokens(secret);
  const envd = createEnvd(gw, { tokens, keyOk: opts.keyOk, bodyLimit: opts.bodyLimit });
  const domain = opts.domain ?? null;
  const shared = { tokens, keyOk: opts.keyOk, defaultDiskMiB: opts.defaultDiskMiB, domain };
  return {
    name: 'e2b',
    tokens,
    // The /v2 control-plane routes; served before the router: envd (Connect RPC, /files, /health)
    // for requests naming a sandbox in `E2b-Sandbox-Id`, and the E2B SDKs' requests to the shared
    // routes whose E2B contract differs from coppice's (control-shared.ts).
    routes: (router) => controlRoutes(router, gw, tokens, opts.defaultDiskMiB, domain),
    owns: (req) => isEnvdRequest(req) || isE2bSharedControl(req),
    serve: (req, res) => (isEnvdRequest(req) ? envd.handle(req, res) : serveE2bSharedControl(gw, shared, req, res)),
    decorate: (route, reply) => decorateReply(route, reply, tokens, opts.defaultDiskMiB),
  };
}
