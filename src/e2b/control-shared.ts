// E2B's contract on the routes it shares with coppice's own REST API, where the two differ:
//   POST /sandboxes              v1 create (Python SDK, JS <= 2.50): refuses options coppice cannot
//                                honour (400 naming the field), exactly as /v2 does
// A request is answered E2B's way when it is authenticated E2B's way (`X-API-KEY`, no Bearer), as
// every E2B SDK sends it; coppice's own SDK and CLI (Bearer) keep coppice's replies (a fork is one
// sandbox view). The mount takes these requests before the router (`owns`), so auth, draining
// and the error body are done here as the edge does them.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gateway } from '../actors/gateway.ts';
import { badRequest, CoppiceError, notFound } from '../errors.ts';
import { presentedKey } from '../http/auth.ts';
import { errorBody, toHttpError } from '../http/errors.ts';
import { readJson } from '../edge/server.ts';
import { CONTROL_BODY_LIMIT, createSandboxBody, parse } from '../protocol/requests.ts';
import { refuseUnsupported, sandboxExtras } from './control.ts';
import type { EnvdTokens } from './tokens.ts';

export interface SharedControlOptions {
  tokens: EnvdTokens;
  keyOk(presented: string | undefined): boolean;
  defaultDiskMiB?: number;
}

type Handler = (gw: Gateway, o: SharedControlOptions, id: string | undefined, req: IncomingMessage) => Promise<{ status: number; body?: unknown }>;

const ROUTES: { path: RegExp; handler: Handler }[] = [
  { path: /^\/sandboxes\/?$/, handler: createV1 },
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
    const reply = await r.handler(gw, o, id, req);
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
  // coppice's extra: start from a snapshot's files (templateID then defaults to the snapshot's).
  const snap = b.snapshotID ? await gw.findSnapshot(b.snapshotID) : undefined;
  if (snap && b.templateID && b.templateID !== snap.template) {
    throw badRequest('templateID', `snapshot ${snap.snapshotID} was taken from template ${snap.template}`);
  }
  const templateID = b.templateID ?? snap!.template;
  if (!gw.templates().some((t) => t.name === templateID)) throw notFound(`template "${templateID}"`);
  const view = await gw.create({
    templateID,
    ...(snap ? { fromSnapshot: { snapshotID: snap.snapshotID } } : {}),
    timeoutMs: b.timeout === undefined ? undefined : b.timeout * 1000,
    metadata: b.metadata,
    envVars: b.envVars,
    limits: b.limits,
    internet: b.allow_internet_access ?? false,
  });
  // coppice's view plus E2B's fields, as the shared route's decorated reply.
  return { status: 201, body: { ...view, ...sandboxExtras(view, o.tokens, o.defaultDiskMiB) } };
}
