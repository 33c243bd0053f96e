// E2B's contract on the routes it shares with coppice's own REST API, where the two differ:
//   POST /sandboxes              v1 create (Python SDK, JS <= 2.50): refuses options coppice cannot
//                                honour (400 naming the field), exactly as /v2 does
//   POST /sandboxes/:id/fork     {timeout?, count?} -> 201 [{sandbox} | {error: {code, message}}]
//   POST /sandboxes/:id/pause    {memory?}: memory:false (a files-only snapshot) is refused (400)
// A request is answered E2B's way when it is authenticated E2B's way (`X-API-KEY`, no Bearer), as
// every E2B SDK sends it; coppice's own SDK and CLI (Bearer) keep coppice's replies (a fork is one
// sandbox view). The mount takes these requests before the router (`owns`), so auth, draining
// and the error body are done here as the edge does them.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Gateway, SandboxView } from '../actors/gateway.ts';
import { badRequest, CoppiceError, toErrorInfo } from '../errors.ts';
import { presentedKey } from '../http/auth.ts';
import { errorBody, httpStatusOf, toHttpError } from '../http/errors.ts';
import { readJson } from '../http/body.ts';
import { createRequestOf } from '../http/create-request.ts';
import { CONTROL_BODY_LIMIT, createSandboxBody, parse } from '../protocol/requests.ts';
import { e2bSandbox, refuseUnsupported, sandboxExtras, type DefaultDiskMiB } from './control.ts';
import type { EnvdTokens } from './tokens.ts';

/** E2B allows up to 100 forks per request; each is a snapshot of the source plus a create. */
export const MAX_FORK_COUNT = 100;
const MAX_TIMEOUT_S = 30 * 24 * 3600;

const forkBody = z
  .object({
    timeout: z.number().int().min(1).max(MAX_TIMEOUT_S).optional(),
    count: z.number().int().min(1).max(MAX_FORK_COUNT, `at most ${MAX_FORK_COUNT} forks per request`).optional(),
    metadata: z.record(z.string().min(1).max(128), z.string().max(1024)).optional(),
  })
  .strict();

const WHOLE_REQUEST = new Set(['not_found', 'conflict', 'unsupported']);

const pauseBody = z.object({ memory: z.boolean().optional() }).passthrough();

export interface SharedControlOptions {
  tokens: EnvdTokens;
  /** --domain: where `<port>-<id>.<domain>` reaches a sandbox's ports. */
  domain?: string | null;
  keyOk(presented: string | undefined): boolean;
  defaultDiskMiB?: DefaultDiskMiB;
}

type Handler = (gw: Gateway, o: SharedControlOptions, id: string | undefined, req: IncomingMessage, res: ServerResponse) => Promise<{ status: number; body?: unknown }>;

const ROUTES: { path: RegExp; handler: Handler }[] = [
  { path: /^\/sandboxes\/?$/, handler: createV1 },
  { path: /^\/sandboxes\/([^/]+)\/fork\/?$/, handler: fork },
  { path: /^\/sandboxes\/([^/]+)\/pause\/?$/, handler: pause },
];

function route(req: IncomingMessage): { handler: Handler; id: string | undefined } | undefined {
  if (req.method !== 'POST') return undefined;
  const path = (req.url ?? '/').split('?')[0]!;
  for (const r of ROUTES) {
    const m = r.path.exec(path);
    if (m) return { handler: r.handler, id: m[1] };
  }
  return undefined;
}

/** An E2B SDK's request to one of the routes above. */
export function isE2bSharedControl(req: IncomingMessage): boolean {
  if (req.headers['e2b-sandbox-id'] !== undefined) return false;
  const bearer = req.headers.authorization?.startsWith('Bearer ') ?? false;
  return !bearer && req.headers['x-api-key'] !== undefined && route(req) !== undefined;
}

export async function serveE2bSharedControl(gw: Gateway, o: SharedControlOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    if (!o.keyOk(presentedKey(req))) throw new CoppiceError('unauthorized', 'missing or invalid API key (Authorization: Bearer <key> or X-API-KEY)');
    gw.assertServing();
    const r = route(req)!;
    let id: string | undefined;
    try {
      id = r.id === undefined ? undefined : decodeURIComponent(r.id);
    } catch {
      throw badRequest('id', 'malformed percent-encoding in the path');
    }
    const reply = await r.handler(gw, o, id, req, res);
    send(res, reply.status, reply.body);
  } catch (err) {
    req.resume();
    const { error, status, unexpected } = toHttpError(err);
    if (unexpected) gw.log.error({ err }, 'e2b control request failed');
    send(res, status, errorBody(error), error.retryAfterS ? { 'retry-after': String(error.retryAfterS) } : {});
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  if (body === undefined) return void res.writeHead(status, headers).end();
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers }).end(text);
}

async function createV1(gw: Gateway, o: SharedControlOptions, _id: string | undefined, req: IncomingMessage): Promise<{ status: number; body: unknown }> {
  const raw = await readJson(req, CONTROL_BODY_LIMIT);
  const b = parse(createSandboxBody, raw);
  refuseUnsupported(raw);
  // coppice's extra, as on its own route: start from a snapshot's files.
  const view = await gw.create(await createRequestOf(gw, b));
  // coppice's view plus E2B's fields, as the shared route's decorated reply.
  return { status: 201, body: { ...view, ...sandboxExtras(view, o.tokens, o.defaultDiskMiB, o.domain ?? null) } };
}

/**
 * `count` forks, one after the other (each a fresh snapshot of the source and a create from it:
 * the Gateway's fork). Each succeeds or fails on its own, as E2B reports them. If the client is
 * gone before the reply is sent, the forks made for it are destroyed (nobody could know their ids).
 */
async function fork(gw: Gateway, o: SharedControlOptions, id: string | undefined, req: IncomingMessage, res: ServerResponse): Promise<{ status: number; body: unknown }> {
  gw.view(id!); // 404 before the body is looked at
  const b = parse(forkBody, await readJson(req, CONTROL_BODY_LIMIT));
  const count = b.count ?? 1;
  let gone = false;
  const onClose = () => (gone = !res.writableFinished);
  res.once('close', onClose);
  const made: SandboxView[] = [];
  const results: ({ sandbox: ReturnType<typeof e2bSandbox> } | { error: { code: number; message: string } })[] = [];
  try {
    for (let i = 0; i < count && !gone; i++) {
      try {
        const view = await gw.forkSandbox(id!, {
          ...(b.timeout !== undefined ? { timeoutMs: b.timeout * 1000 } : {}),
          ...(b.metadata ? { metadata: b.metadata } : {}),
        });
        made.push(view);
        results.push({ sandbox: e2bSandbox(view, o.tokens, o.domain ?? null) });
      } catch (err) {
        // A source that cannot be forked at all (gone, paused, a backend without snapshots) fails
        // the whole request when nothing was made yet, so the SDK raises its usual error class.
        if (made.length === 0 && err instanceof CoppiceError && WHOLE_REQUEST.has(err.code)) throw err;
        const info = toErrorInfo(err);
        const status = err instanceof CoppiceError ? httpStatusOf(err.code) : 500;
        if (status >= 500) gw.log.warn({ err, source: id }, 'e2b fork failed');
        results.push({ error: { code: status, message: status >= 500 && !(err instanceof CoppiceError) ? 'internal error' : info.message } });
      }
    }
  } finally {
    res.off('close', onClose);
  }
  if (gone || res.destroyed) {
    await Promise.all(made.map((v) => gw.destroy(v.sandboxID).catch(() => {})));
    return { status: 499, body: undefined };
  }
  return { status: 201, body: results };
}

async function pause(gw: Gateway, _o: SharedControlOptions, id: string | undefined, req: IncomingMessage): Promise<{ status: number }> {
  gw.view(id!);
  const b = parse(pauseBody, await readJson(req, CONTROL_BODY_LIMIT));
  if (b.memory === false) {
    throw badRequest('memory', 'a files-only pause (keepMemory: false) is not supported by coppice: a pause keeps memory and processes; omit it or pass true');
  }
  await gw.pause(id!);
  return { status: 204 };
}
