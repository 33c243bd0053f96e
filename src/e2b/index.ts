// Drop-in compatibility with the official `e2b` SDK (docs/e2b.md): the control plane under
// /v2/sandboxes (plus E2B's fields on coppice's shared /sandboxes replies), and the envd surface
// (Connect RPC + /files + /health) for requests carrying `E2b-Sandbox-Id`, all on the gateway's port.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gateway } from '../actors/gateway.ts';
import type { Reply, Router } from '../http/router.ts';
import { controlRoutes, decorateReply } from './control.ts';
import { createEnvd, isEnvdRequest } from './envd.ts';
import { createEnvdTokens, type EnvdTokens } from './tokens.ts';

export interface E2bOptions {
  /** The gateway's API keys: the first one keys the envd access tokens; any of them opens envd. */
  apiKeys: string[];
  keyOk(presented: string | undefined): boolean;
}

export interface E2b {
  readonly tokens: EnvdTokens;
  /** Mount the /v2 control-plane routes. */
  routes(router: Router): void;
  /** Does this request belong to the envd surface (it names a sandbox in `E2b-Sandbox-Id`)? */
  isEnvd(req: IncomingMessage): boolean;
  /** Serve an envd request; never rejects (errors are answered as envd does). */
  handleEnvd(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** E2B's fields on the replies of coppice's shared sandbox routes (`route` = "METHOD /pattern"). */
  decorate(route: string, reply: Exclude<Reply, 'handled'>): Exclude<Reply, 'handled'>;
}

export function createE2b(gw: Gateway, opts: E2bOptions): E2b {
  const secret = opts.apiKeys[0];
  if (!secret) throw new Error('the E2B surface needs an API key');
  const tokens = createEnvdTokens(secret);
  const envd = createEnvd(gw, { tokens, keyOk: opts.keyOk });
  return {
    tokens,
    routes: (router) => controlRoutes(router, gw, tokens),
    isEnvd: isEnvdRequest,
    handleEnvd: (req, res) => envd.handle(req, res),
    decorate: (route, reply) => decorateReply(route, reply, tokens),
  };
}
