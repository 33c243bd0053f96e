// A surface mounted on the edge's HTTP server from app.ts (the E2B compatibility layer is one):
// it adds routes, may take over whole requests before the router, and may add fields to the
// replies of shared routes. The edge knows this interface, never the surface behind it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Reply, Router } from './router.ts';

export type RouteReply = Exclude<Reply, 'handled'>;

export interface Mount {
  /** Label used in request metrics and logs for requests the mount takes over. */
  readonly name: string;
  routes?(router: Router): void;
  /** Does this mount serve the whole request itself (before the router)? */
  owns?(req: IncomingMessage): boolean;
  /** Serve an owned request; never rejects (errors are answered by the mount). */
  serve?(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Take a connection upgrade (WebSocket) itself; false = not this mount's. */
  upgrade?(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  /** Add the mount's fields to a shared route's reply (`route` = "METHOD /pattern"). */
  decorate?(route: string, reply: RouteReply): RouteReply;
}
