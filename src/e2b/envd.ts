// The envd surface on the gateway's own port. The SDK sends every sandbox request (RPC and file
// transfer) to E2B_SANDBOX_URL with `E2b-Sandbox-Id: <id>` (and `E2b-Sandbox-Port: 49983`); the
// edge hands any request carrying that header here, before its router.
//
//   1. The sandbox must exist and be running: otherwise 502, which the SDK reads as "not running"
//      (isRunning() -> false, RPCs -> unavailable / SandboxNotFoundError) — as E2B's proxy does.
//   2. `X-Access-Token` must be the sandbox's envd token (create/connect returned it), or the
//      request must carry a gateway API key: else 401.
//   3. GET /health -> 204; GET/POST /files; Connect RPC (JSON or binary, unary and server
//      streaming) for process.Process and filesystem.Filesystem via @connectrpc/connect-node.
//
// The user: `Authorization: Basic base64("<user>:")` on RPCs, `?username=` on /files; absent =
// the template's default user ("user" where it exists, as E2B).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { createContextValues } from '@connectrpc/connect';
import { SANDBOX_ID, type Gateway } from '../actors/gateway.ts';
import { CoppiceError } from '../errors.ts';
import { presentedKey } from '../http/auth.ts';
import { httpStatusOf } from '../http/errors.ts';
import { envdCallKey, type EnvdCall } from './context.ts';
import { readFile, sendFsError, sendJson, writeFiles } from './files-http.ts';
import { filesystemService } from './filesystem-service.ts';
import { Filesystem } from './gen/filesystem/filesystem_pb.ts';
import { Process } from './gen/process/process_pb.ts';
import { processService } from './process-service.ts';
import { FsError, runHelper, SCRIPTS } from './sandbox-fs.ts';
import type { EnvdTokens } from './tokens.ts';

const USER = /^[a-z_][a-z0-9_-]{0,31}$/;
/** Longest a streaming RPC may ask for (Connect-Timeout-Ms); 0/absent = none. */
const MAX_TIMEOUT_MS = 24 * 3600 * 1000;

export interface EnvdOptions {
  tokens: EnvdTokens;
  /** A gateway API key also opens the envd surface (for clients other than the SDK). */
  keyOk(presented: string | undefined): boolean;
  /** Largest /files upload body, decoded (the gateway's --body-limit; 413 beyond). */
  bodyLimit?: number;
}

export interface Envd {
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export function isEnvdRequest(req: IncomingMessage): boolean {
  return req.headers['e2b-sandbox-id'] !== undefined;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** `Authorization: Basic base64("<user>:")` as the SDK sends it; undefined when absent. */
export function basicUser(req: IncomingMessage): string | undefined {
  const auth = header(req, 'authorization');
  if (!auth?.startsWith('Basic ')) return undefined;
  const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
  const user = decoded.split(':')[0];
  return user || undefined;
}

export function createEnvd(gw: Gateway, opts: EnvdOptions): Envd {
  const calls = new WeakMap<IncomingMessage, EnvdCall>();
  const adapter = connectNodeAdapter({
    routes: (router) => {
      router.service(Process, processService(gw));
      router.service(Filesystem, filesystemService(gw));
    },
    maxTimeoutMs: MAX_TIMEOUT_MS,
    contextValues: (req) => createContextValues().set(envdCallKey, calls.get(req as IncomingMessage)),
  });

  // Sandboxes whose backend has no default user of its own (bhyve): E2B's "user" if present.
  const defaultUsers = new Map<string, Promise<string | undefined>>();
  const defaultUser = (sandboxId: string, backend: string): Promise<string | undefined> => {
    if (gw.capabilities(backend).defaultUser) return Promise.resolve(undefined); // the backend picks it itself
    let p = defaultUsers.get(sandboxId);
    if (!p) {
      p = (async () => {
        const out = await runHelper({ gw, sandboxId, user: 'root' }, SCRIPTS.defaultUser, [], 1024, 30_000);
        return out.toString('utf8').trim() === 'user' ? 'user' : 'root';
      })();
      p.catch(() => defaultUsers.delete(sandboxId));
      defaultUsers.set(sandboxId, p);
      // Forget sandboxes that are gone (the map stays about as small as the live set).
      if (defaultUsers.size > 1024) {
        const live = new Set(gw.list().map((v) => v.sandboxID));
        for (const id of defaultUsers.keys()) if (!live.has(id)) defaultUsers.delete(id);
      }
    }
    return p;
  };

  const unavailable = (res: ServerResponse, sandboxId: string, why: string) =>
    sendJson(res, 502, { code: 502, message: `The sandbox ${sandboxId} ${why}`, sandboxId });

  return {
    async handle(req, res) {
      try {
        const sandboxId = header(req, 'e2b-sandbox-id') ?? '';
        if (!SANDBOX_ID.test(sandboxId)) return unavailable(res, sandboxId, 'was not found');
        let view;
        try {
          view = gw.view(sandboxId);
        } catch {
          return unavailable(res, sandboxId, 'was not found');
        }
        if (view.state !== 'running') return unavailable(res, sandboxId, `is ${view.state}, not running`);
        // The SDK speaks Connect's JSON codec; the binary one is not offered (a malformed binary
        // body would otherwise surface as an internal error). Connect's answer: 415.
        if (/proto/i.test(header(req, 'content-type') ?? '')) {
          return sendJson(res, 415, { code: 'invalid_argument', message: 'only the JSON codec is supported (application/json, application/connect+json)' });
        }
        if (!opts.tokens.check(sandboxId, header(req, 'x-access-token')) && !opts.keyOk(presentedKey(req))) {
          return sendJson(res, 401, { code: 401, message: 'missing or invalid X-Access-Token for this sandbox' });
        }
        const url = new URL(req.url ?? '/', 'http://envd');
        const path = url.pathname;

        if (path === '/health') {
          if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { code: 405, message: 'GET /health' });
          res.writeHead(204).end();
          return;
        }

        const asked = path === '/files' ? url.searchParams.get('username') || undefined : basicUser(req);
        if (asked !== undefined && !USER.test(asked)) return sendJson(res, 400, { code: 400, message: `invalid user name ${JSON.stringify(asked)}` });
        const user = asked ?? (await defaultUser(sandboxId, view.backend));

        if (path === '/files') {
          const target = { gw, sandboxId, user };
          const filePath = url.searchParams.get('path');
          if (req.method === 'GET') {
            if (!filePath) return sendJson(res, 400, { code: 400, message: 'path query parameter is required' });
            return await readFile(target, filePath, res);
          }
          if (req.method === 'POST') {
            const written = await writeFiles(target, req, filePath, opts.bodyLimit);
            return sendJson(res, 200, written);
          }
          return sendJson(res, 405, { code: 405, message: 'GET or POST /files' });
        }

        if (path.startsWith('/process.Process/') || path.startsWith('/filesystem.Filesystem/')) {
          calls.set(req, { sandboxId, user });
          return await new Promise<void>((resolve) => {
            res.once('close', () => resolve());
            adapter(req, res);
          });
        }
        return sendJson(res, 404, { code: 404, message: `no envd endpoint ${req.method} ${path}` });
      } catch (err) {
        req.resume(); // an upload we refused: let the rest of its body drain
        if (err instanceof FsError) return sendFsError(res, err);
        if (err instanceof CoppiceError) return sendJson(res, httpStatusOf(err.code), { code: httpStatusOf(err.code), message: err.message });
        gw.log.error({ err }, 'e2b envd request failed');
        sendJson(res, 500, { code: 500, message: 'internal error' });
      }
    },
  };
}
