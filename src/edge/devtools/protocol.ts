// Wire types of the devtools inspection WebSocket (`GET /devtools/ws`). Types and constants only.
//
// AUTH (checked before the upgrade; refusals are plain HTTP with the JSON error body): the API key
// as `Authorization: Bearer <key>` / `X-API-KEY`, or, from a browser, as a second subprotocol:
//     new WebSocket(url, ['coppice.devtools.v1', 'coppice.key.' + key])
// The server selects `coppice.devtools.v1` (the client must offer it) and never echoes the key.
//
// SERVER -> CLIENT (JSON text frames, in order):
//   hello     once, first: the current tree (as GET /devtools/tree) and the per-client limits
//   actor     an actor was created (node without children)
//   event     an event was delivered to `target` (from `source`, if an actor sent it), sanitized
//   snapshot  an actor's new snapshot: status, value, state in words, sanitized context
//   dropped   this client fell behind: `count` messages (seq fromSeq..toSeq) were not sent;
//             a `tree` follows at once, so the client's picture is whole again
//   tree      the whole (filtered) tree, after `dropped`, a filter change or a {"type":"tree"} ask
//   error     a bad client message (the connection stays)
// Every streamed message has `seq` (one counter per gateway, gaps = filtered or dropped) and `ts`.
//
// CLIENT -> SERVER:
//   {"type":"filter","sandbox":"<id>"|null}   only messages about that sandbox (and its
//                                             processes and effects); answered with a `tree`
//   {"type":"tree"}                           resend the tree
//
// The gateway subscribes to XState inspection (system.inspect) only while at least one client is
// connected, and unsubscribes when the last one leaves. Each client has a bounded outbox: above
// `highWaterMark` bytes buffered in the socket, messages queue; above `maxQueueBytes` or
// `maxQueueMessages` queued, new messages are dropped (and reported as above), never buffered
// without bound and never slowing the actors down.
import type { ActorNode, Tree } from './tree.ts';

export const DEVTOOLS_WS_PROTOCOL = 'coppice.devtools.v1';

export interface OutboxLimits {
  highWaterMark: number;
  maxQueueBytes: number;
  maxQueueMessages: number;
}

export type DevtoolsMessage =
  | { type: 'hello'; protocol: string; seq: number; tree: Tree; limits: OutboxLimits }
  | { type: 'actor'; seq: number; ts: number; sandbox: string | null; actor: ActorNode }
  | { type: 'event'; seq: number; ts: number; sandbox: string | null; target: string; targetId: string; source: string | null; event: unknown }
  | {
      type: 'snapshot';
      seq: number;
      ts: number;
      sandbox: string | null;
      actor: string;
      actorId: string;
      systemId: string | null;
      kind: string;
      status: string;
      value: unknown;
      state: string | null;
      context?: unknown;
    }
  | { type: 'dropped'; count: number; fromSeq: number; toSeq: number }
  | { type: 'tree'; seq: number; tree: Tree }
  | { type: 'error'; code: number; error: string; message: string };

export type DevtoolsClientMessage = { type: 'filter'; sandbox: string | null } | { type: 'tree' };
