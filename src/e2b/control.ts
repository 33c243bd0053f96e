// The E2B control plane as the `e2b` SDK (2.51, and <= 2.50) calls it.
//
// coppice's own REST routes already have E2B's shape (`POST /sandboxes {templateID}`, `GET/DELETE
// /sandboxes/:id`, `/pause`, `/timeout`, `/connect`); the SDK's other forms live here:
//   POST /v2/sandboxes                 create (2.51)            -> 201 Sandbox
//   GET  /v2/sandboxes                 list with filters, pages -> 200 ListedSandbox[] + X-Next-Token
//   POST /v2/sandboxes/:id/connect     resume-or-extend (2.51)  -> 200 running / 201 resumed, Sandbox
//   POST /sandboxes/:id/refreshes      keep alive {duration s}  -> 204 (only ever extends)
// and `decorate` adds the fields the SDK reads (envdVersion, envdAccessToken, clientID) to the
// replies of coppice's shared routes, so SDKs <= 2.50 (create and connect on /sandboxes) work too.
import { sampleMetrics } from './metrics.ts';
import { z } from 'zod';
import type { Gateway, SandboxView } from '../actors/gateway.ts';
import { badRequest, notFound } from '../errors.ts';
import type { Reply, Router } from '../http/router.ts';
import { CONTROL_BODY_LIMIT, connectBody, createSandboxBody, parse } from '../protocol/requests.ts';
import { CLIENT_ID, ENVD_VERSION } from './constants.ts';
import type { EnvdTokens } from './tokens.ts';

/** E2B's Sandbox (create/connect reply). */
export interface E2bSandbox {
  sandboxID: string;
  templateID: string;
  clientID: string;
  envdVersion: string;
  envdAccessToken: string;
  alias?: string;
  /** Where `<port>-<id>.<domain>` reaches a sandbox's ports (--domain); null: not configured. */
  domain: string | null;
}

/** E2B's ListedSandbox. */
export interface E2bListedSandbox {
  sandboxID: string;
  templateID: string;
  clientID: string;
  startedAt: string;
  endAt: string;
  cpuCount: number;
  memoryMB: number;
  diskSizeMB: number;
  metadata: Record<string, string>;
  state: 'running' | 'paused';
  envdVersion: string;
}

const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;

export function e2bSandbox(view: SandboxView, tokens: EnvdTokens, domain: string | null = null): E2bSandbox {
  return {
    sandboxID: view.sandboxID,
    templateID: view.templateID,
    clientID: CLIENT_ID,
    envdVersion: ENVD_VERSION,
    envdAccessToken: tokens.token(view.sandboxID),
    domain,
  };
}

/** The quota a backend gives a sandbox whose create named none (0: it sets none). */
export type DefaultDiskMiB = (backend: string) => number;

/**
 * E2B's diskSizeMB: the sandbox's disk quota, as the create named it or else its backend's default
 * (`--disk-mib` on Linux jails); 0 where coppice sets none (bhyve: the image's own size).
 */
export function diskSizeMB(view: SandboxView, defaultDiskMiB: DefaultDiskMiB | undefined): number {
  const asked = (view.limits as { diskMiB?: number }).diskMiB;
  if (typeof asked === 'number') return asked;
  return defaultDiskMiB?.(view.backend) ?? 0;
}

/** The fields E2B's SDKs read that coppice's own sandbox view does not have. */
/** `domain` only where E2B's reply has it (create, connect): undefined leaves it out. */
export function sandboxExtras(view: SandboxView, tokens: EnvdTokens, defaultDiskMiB?: DefaultDiskMiB, domain?: string | null) {
  return {
    clientID: CLIENT_ID,
    envdVersion: ENVD_VERSION,
    envdAccessToken: tokens.token(view.sandboxID),
    diskSizeMB: diskSizeMB(view, defaultDiskMiB),
    ...(domain !== undefined ? { domain } : {}),
  };
}

function listed(view: SandboxView, defaultDiskMiB: DefaultDiskMiB | undefined): E2bListedSandbox {
  return {
    sandboxID: view.sandboxID,
    templateID: view.templateID,
    clientID: CLIENT_ID,
    startedAt: view.startedAt,
    endAt: view.endAt,
    cpuCount: view.cpuCount,
    memoryMB: view.memoryMB,
    diskSizeMB: diskSizeMB(view, defaultDiskMiB),
    metadata: view.metadata,
    state: view.state === 'paused' ? 'paused' : 'running',
    envdVersion: ENVD_VERSION,
  };
}

/**
 * Options coppice cannot honour are refused (400) rather than ignored: a sandbox that silently
 * does not auto-pause, mount a volume or filter egress would break what the caller relies on.
 */
export function refuseUnsupported(raw: unknown): void {
  const b = (raw ?? {}) as Record<string, unknown>;
  const present = (v: unknown) =>
    v !== undefined && v !== null && !(typeof v === 'object' && Object.keys(v as object).length === 0) && !(Array.isArray(v) && v.length === 0);
  if (b.autoPause === true) throw badRequest('autoPause', 'pausing on timeout is not supported by coppice (sandboxes are killed at their timeout)');
  if ((b.autoResume as { enabled?: unknown } | undefined)?.enabled === true) throw badRequest('autoResume', 'auto-resume is not supported by coppice');
  if (present(b.volumeMounts)) throw badRequest('volumeMounts', 'volumes are not supported by coppice');
  if (present(b.network)) throw badRequest('network', 'egress rules are not supported by coppice (use allow_internet_access)');
  if (present(b.mcp)) throw badRequest('mcp', 'the MCP gateway is not supported by coppice');
}

const listQuery = z.object({
  metadata: z.string().optional(),
  state: z.string().optional(),
  template: z.string().optional(),
  startedAfter: z.string().datetime({ offset: true }).optional(),
  order: z.enum(['asc', 'desc']).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE).optional(),
  nextToken: z.string().max(200).optional(),
});

/** `metadata` as the SDK sends it: URLSearchParams text of percent-encoded pairs ("k=v&k2=v2"). */
export function parseMetadataFilter(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!raw) return out;
  const dec = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  for (const [k, v] of new URLSearchParams(raw)) out[dec(k)] = dec(v);
  return out;
}

/** The page cursor: where the previous page ended, in the list's order (opaque to clients). */
function encodeCursor(v: SandboxView): string {
  return Buffer.from(`${Date.parse(v.startedAt)}:${v.sandboxID}`).toString('base64url');
}

function decodeCursor(token: string): { t: number; id: string } {
  const m = /^(\d+):([a-z0-9]+)$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
  if (!m) throw badRequest('nextToken', 'is not a token this gateway issued');
  return { t: Number(m[1]), id: m[2]! };
}

export function listSandboxes(views: SandboxView[], query: URLSearchParams, defaultDiskMiB?: DefaultDiskMiB): { items: E2bListedSandbox[]; nextToken: string | null } {
  const q = parse(listQuery, Object.fromEntries(query), 'query');
  const meta = parseMetadataFilter(q.metadata);
  const states = new Set((q.state ?? 'running,paused').split(',').map((s) => s.trim()).filter(Boolean));
  for (const s of states) if (s !== 'running' && s !== 'paused') throw badRequest('query.state', `unknown state "${s}" (running, paused)`);
  const after = q.startedAfter ? Date.parse(q.startedAfter) : null;
  const order = q.order ?? 'desc'; // E2B: newest first
  const key = (v: SandboxView): [number, string] => [Date.parse(v.startedAt), v.sandboxID];
  const cmp = (a: [number, string], b: [number, string]) => (a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)) * (order === 'asc' ? 1 : -1);
  let rows = views.filter((v) => {
    // Starting and stopping sandboxes are E2B's "not listed" states.
    if (v.state !== 'running' && v.state !== 'paused') return false;
    if (!states.has(v.state)) return false;
    if (q.template && v.templateID !== q.template) return false;
    if (after !== null && Date.parse(v.startedAt) < after) return false; // at or after
    for (const [k, val] of Object.entries(meta)) if (v.metadata[k] !== val) return false;
    return true;
  });
  rows.sort((a, b) => cmp(key(a), key(b)));
  if (q.nextToken) {
    const c = decodeCursor(q.nextToken);
    rows = rows.filter((v) => cmp(key(v), [c.t, c.id]) > 0);
  }
  const limit = q.limit ?? DEFAULT_PAGE;
  const page = rows.slice(0, limit);
  return { items: page.map((v) => listed(v, defaultDiskMiB)), nextToken: rows.length > limit ? encodeCursor(page[page.length - 1]!) : null };
}

export function controlRoutes(router: Router, gw: Gateway, tokens: EnvdTokens, defaultDiskMiB?: DefaultDiskMiB, domain: string | null = null): void {
  router
    .on('POST', '/v2/sandboxes', async (ctx) => {
      const raw = await ctx.body(CONTROL_BODY_LIMIT);
      const b = parse(createSandboxBody, raw);
      refuseUnsupported(raw);
      if (!b.templateID) throw badRequest('templateID', 'is required');
      if (!gw.templates().some((t) => t.name === b.templateID)) throw notFound(`template "${b.templateID}"`);
      const view = await gw.create({
        templateID: b.templateID,
        timeoutMs: b.timeout === undefined ? undefined : b.timeout * 1000,
        metadata: b.metadata,
        envVars: b.envVars,
        limits: b.limits,
        internet: b.allow_internet_access ?? false,
      });
      return { status: 201, body: e2bSandbox(view, tokens, domain) };
    })
    .on('GET', '/v2/sandboxes', (ctx) => {
      const { items, nextToken } = listSandboxes(gw.list(), ctx.query, defaultDiskMiB);
      const headers: Record<string, string> = nextToken ? { 'x-next-token': nextToken } : {};
      return { status: 200, body: items, headers };
    })
    .on('POST', '/v2/sandboxes/:id/connect', async (ctx) => {
      const id = ctx.params.id!;
      gw.view(id); // 404 before the body is looked at
      const b = parse(connectBody, await ctx.body(CONTROL_BODY_LIMIT));
      const resumed = await gw.connect(id, (b.timeout ?? 300) * 1000);
      return { status: resumed ? 201 : 200, body: e2bSandbox(gw.view(id), tokens, domain) };
    })
    // sandbox.getMetrics(): one sample, now (E2B keeps a series; `start`/`end` are accepted and ignored).
    .on('GET', '/sandboxes/:id/metrics', async (ctx) => ({ status: 200, body: await sampleMetrics(gw, ctx.params.id!) }))
    .on('POST', '/sandboxes/:id/refreshes', async (ctx) => {
      const id = ctx.params.id!;
      const view = gw.view(id);
      if (view.state !== 'running') throw notFound(`running sandbox "${id}"`);
      const b = parse(refreshBody, await ctx.body(CONTROL_BODY_LIMIT));
      // Keep alive for at least `duration` more seconds; never shortens (setTimeout may).
      const wantMs = (b.duration ?? DEFAULT_REFRESH_S) * 1000;
      const leftMs = Date.parse(view.endAt) - Date.now();
      if (wantMs > leftMs) await gw.setTimeout(id, wantMs);
      return { status: 204 };
    });
}

const DEFAULT_REFRESH_S = 60;
const refreshBody = z.object({ duration: z.number().int().min(0).max(3600).optional() }).passthrough();

/** Route patterns of coppice's own routes whose replies the SDK also reads as E2B's. */
const SANDBOX_REPLY = new Set(['POST /sandboxes', 'GET /sandboxes/:id', 'POST /sandboxes/:id/connect']);

/**
 * Add E2B's fields to a reply of coppice's shared sandbox routes (a superset: coppice clients see
 * the same view plus E2B's fields). Other replies pass through unchanged.
 */
export function decorateReply(route: string, reply: Exclude<Reply, 'handled'>, tokens: EnvdTokens, defaultDiskMiB?: DefaultDiskMiB): Exclude<Reply, 'handled'> {
  const body = reply.body as SandboxView | SandboxView[] | undefined;
  if (reply.status >= 300 || !body || typeof body !== 'object') return reply;
  if (route === 'GET /sandboxes' && Array.isArray(body)) {
    return { ...reply, body: body.map((v) => ({ ...v, clientID: CLIENT_ID, envdVersion: ENVD_VERSION, diskSizeMB: diskSizeMB(v, defaultDiskMiB) })) };
  }
  if (SANDBOX_REPLY.has(route) && !Array.isArray(body) && typeof body.sandboxID === 'string') {
    return { ...reply, body: { ...body, ...sandboxExtras(body, tokens, defaultDiskMiB) } };
  }
  return reply;
}
