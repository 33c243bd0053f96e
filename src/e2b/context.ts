// What the envd entry point resolved for a request (sandbox, user), handed to the RPC handlers.
import { Code, ConnectError, createContextKey, type HandlerContext } from '@connectrpc/connect';

export interface EnvdCall {
  sandboxId: string;
  /** The user commands and file helpers run as; undefined = the backend's default for the template. */
  user: string | undefined;
}

export const envdCallKey = createContextKey<EnvdCall | undefined>(undefined, { description: 'coppice e2b envd call' });

export function envdCall(ctx: HandlerContext): EnvdCall {
  const c = ctx.values.get(envdCallKey);
  if (!c) throw new ConnectError('no sandbox resolved for this call', Code.Internal);
  return c;
}
