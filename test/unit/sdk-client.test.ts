// The SDK against a small scripted HTTP server (no gateway, no root): requests it makes, how it
// maps the gateway's error bodies to typed errors, the NDJSON warm stream, connection failures.
// Imported the way users import it: from the package, `coppice/sdk`.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  AuthenticationError,
  BackendError,
  CoppiceApiError,
  CoppiceClient,
  ConflictError,
  ConnectionError,
  errorFromBody,
  GatewayTimeoutError,
  InternalServerError,
  InvalidArgumentError,
  NotFoundError,
  PayloadTooLargeError,
  resolveConn,
  Sandbox,
  UnavailableError,
  UnsupportedError,
} from 'coppice/sdk';

interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
  accept: string | undefined;
  body: unknown;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: unknown) => void;

let server: Server;
let url: string;
let seen: Seen[] = [];
const routes = new Map<string, Handler>();
const KEY = 'sdk-unit-key';

const json = (res: ServerResponse, status: number, body?: unknown) => {
  if (body === undefined) return void res.writeHead(status).end();
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
};
const info = (id: string, extra: object = {}) => ({
  sandboxID: id,
  templateID: 'base',
  backend: 'jail',
  state: 'running',
  ip: '10.78.0.2',
  startedAt: new Date().toISOString(),
  endAt: new Date(Date.now() + 60_000).toISOString(),
  ...extra,
});

before(async () => {
  server = createServer(async (req, res) => {
    let text = '';
    for await (const c of req) text += c;
    const body = text ? JSON.parse(text) : undefined;
    seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, accept: req.headers.accept, body });
    const h = routes.get(`${req.method} ${req.url}`);
    if (h) return h(req, res, body);
    json(res, 404, { code: 404, error: 'not_found', message: `no route ${req.method} ${req.url}` });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));
beforeEach(() => {
  seen = [];
  routes.clear();
});

describe('typed errors', () => {
  it('maps the gateway body {code, error, message, field} to a class by its stable code', () => {
    const cases: [number, string, new (...a: never[]) => CoppiceApiError][] = [
      [400, 'bad_request', InvalidArgumentError],
      [401, 'unauthorized', AuthenticationError],
      [404, 'not_found', NotFoundError],
      [409, 'conflict', ConflictError],
      [413, 'payload_too_large', PayloadTooLargeError],
      [500, 'internal', InternalServerError],
      [501, 'unsupported', UnsupportedError],
      [502, 'backend_failed', BackendError],
      [503, 'draining', UnavailableError],
      [503, 'not_ready', UnavailableError],
      [504, 'timeout', GatewayTimeoutError],
    ];
    for (const [status, code, Cls] of cases) {
      const e = errorFromBody(status, { code: status, error: code, message: `m-${code}`, field: 'x' });
      assert.ok(e instanceof Cls, `${code} -> ${Cls.name}`);
      assert.ok(e instanceof CoppiceApiError);
      assert.deepEqual([e.status, e.code, e.message, e.field, e.name], [status, code, `m-${code}`, 'x', Cls.name]);
      assert.deepEqual(e.toJSON(), { code: status, error: code, message: `m-${code}`, field: 'x' });
    }
    assert.ok(errorFromBody(413, { error: 'payload_too_large', message: '' }) instanceof InvalidArgumentError);
    assert.equal((errorFromBody(503, { error: 'draining', message: '' }) as UnavailableError).draining, true);
    assert.equal((errorFromBody(503, { error: 'not_ready', message: '' }) as UnavailableError).draining, false);
  });

  it('tolerates bodies that are not the gateway\'s (a proxy\'s 502 page)', () => {
    const e = errorFromBody(502, '<html>bad gateway</html>');
    assert.ok(e instanceof BackendError);
    assert.equal(e.code, 'http_502');
    assert.equal(e.message, 'HTTP 502');
    assert.equal(errorFromBody(418, {}).constructor, CoppiceApiError);
  });
});

describe('connection options', () => {
  it('takes url and key from options, else COPPICE_URL / COPPICE_API_KEY; no key is an AuthenticationError', () => {
    const saved = { u: process.env.COPPICE_URL, k: process.env.COPPICE_API_KEY };
    try {
      process.env.COPPICE_URL = 'http://env:1/';
      process.env.COPPICE_API_KEY = 'env-key';
      assert.deepEqual(resolveConn(), { url: 'http://env:1', apiKey: 'env-key', timeoutMs: 120_000 });
      assert.deepEqual(resolveConn({ url: 'http://opt:2', apiKey: 'opt-key', requestTimeoutMs: 5 }), { url: 'http://opt:2', apiKey: 'opt-key', timeoutMs: 5 });
      delete process.env.COPPICE_URL;
      delete process.env.COPPICE_API_KEY;
      assert.equal(resolveConn({ apiKey: 'k' }).url, 'http://127.0.0.1:3000');
      assert.throws(() => resolveConn(), AuthenticationError);
      assert.throws(() => resolveConn({ url: 'ftp://x', apiKey: 'k' }), ConnectionError);
    } finally {
      for (const [k, v] of [['COPPICE_URL', saved.u], ['COPPICE_API_KEY', saved.k]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('nothing listening is a ConnectionError, not a CoppiceApiError', async () => {
    await assert.rejects(Sandbox.list({ url: 'http://127.0.0.1:9', apiKey: KEY }), (e) => e instanceof ConnectionError && /127\.0\.0\.1:9/.test(e.message));
  });
});

describe('Sandbox', () => {
  it('create, list, exec, pause, resume, setTimeout, snapshot, fork, kill: the requests they make', async () => {
    routes.set('POST /sandboxes', (_q, res, body) => json(res, 201, info('aaaaaaaaaa', { templateID: (body as { templateID: string }).templateID })));
    routes.set('GET /sandboxes', (_q, res) => json(res, 200, [info('aaaaaaaaaa')]));
    routes.set('POST /sandboxes/aaaaaaaaaa/exec', (_q, res) => json(res, 200, { processID: '1', exitCode: 0, signal: null, stdout: 'hi\n', stderr: '', truncated: false, durationMs: 3 }));
    routes.set('POST /sandboxes/aaaaaaaaaa/pause', (_q, res) => json(res, 204));
    routes.set('POST /sandboxes/aaaaaaaaaa/resume', (_q, res) => json(res, 204));
    routes.set('POST /sandboxes/aaaaaaaaaa/timeout', (_q, res) => json(res, 204));
    routes.set('POST /sandboxes/aaaaaaaaaa/snapshot', (_q, res) => json(res, 201, { snapshotID: 'snap-bbbbbbbbbb', sandboxID: 'aaaaaaaaaa', template: 'base', backend: 'jail', createdAt: '', sizeBytes: 1 }));
    routes.set('POST /sandboxes/aaaaaaaaaa/fork', (_q, res) => json(res, 201, info('cccccccccc')));
    routes.set('DELETE /sandboxes/aaaaaaaaaa', (_q, res) => json(res, 204));

    const sb = await Sandbox.create('base', { url, apiKey: KEY, timeoutMs: 59_001, envVars: { A: '1' }, metadata: { m: 'n' }, limits: { memoryMiB: 256 } });
    assert.equal(sb.sandboxID, 'aaaaaaaaaa');
    assert.deepEqual(seen[0]!.body, { templateID: 'base', timeout: 60, metadata: { m: 'n' }, envVars: { A: '1' }, limits: { memoryMiB: 256 } });
    assert.equal(seen[0]!.auth, `Bearer ${KEY}`);
    assert.equal((await Sandbox.list({ url, apiKey: KEY }))[0]!.sandboxID, 'aaaaaaaaaa');
    assert.equal((await sb.exec(['echo', 'hi'], { cwd: '/tmp' })).stdout, 'hi\n');
    assert.deepEqual(seen.at(-1)!.body, { argv: ['echo', 'hi'], cwd: '/tmp' });
    await sb.exec('echo hi');
    assert.deepEqual(seen.at(-1)!.body, { cmd: 'echo hi' });
    await sb.pause();
    await sb.resume();
    await sb.setTimeout(30_000);
    assert.deepEqual(seen.at(-1)!.body, { timeout: 30 });
    assert.equal((await sb.snapshot()).snapshotID, 'snap-bbbbbbbbbb');
    const fork = await sb.fork({ timeoutMs: 10_000 });
    assert.equal(fork.sandboxID, 'cccccccccc');
    assert.deepEqual(seen.at(-1)!.body, { timeout: 10 });
    await sb.kill();
    assert.deepEqual(
      seen.map((s) => `${s.method} ${s.url}`),
      [
        'POST /sandboxes', 'GET /sandboxes', 'POST /sandboxes/aaaaaaaaaa/exec', 'POST /sandboxes/aaaaaaaaaa/exec',
        'POST /sandboxes/aaaaaaaaaa/pause', 'POST /sandboxes/aaaaaaaaaa/resume', 'POST /sandboxes/aaaaaaaaaa/timeout',
        'POST /sandboxes/aaaaaaaaaa/snapshot', 'POST /sandboxes/aaaaaaaaaa/fork', 'DELETE /sandboxes/aaaaaaaaaa',
      ],
    );
    // kill is idempotent: already gone (404) is fine; other failures are not.
    routes.delete('DELETE /sandboxes/aaaaaaaaaa');
    await sb.kill();
    routes.set('DELETE /sandboxes/aaaaaaaaaa', (_q, res) => json(res, 503, { code: 503, error: 'draining', message: 'gateway is draining' }));
    await assert.rejects(sb.kill(), UnavailableError);
  });

  it('gateway refusals arrive typed, with the field for 400s', async () => {
    routes.set('POST /sandboxes', (_q, res) => json(res, 400, { code: 400, error: 'bad_request', message: 'limits.memoryMiB: too small', field: 'limits.memoryMiB' }));
    routes.set('GET /sandboxes/aaaaaaaaaa', (_q, res) => json(res, 200, info('aaaaaaaaaa', { backend: 'bhyve' })));
    routes.set('POST /sandboxes/aaaaaaaaaa/snapshot', (_q, res) => json(res, 501, { code: 501, error: 'unsupported', message: 'snapshot not supported on bhyve backend v1' }));
    routes.set('POST /sandboxes/aaaaaaaaaa/pause', (_q, res) => json(res, 409, { code: 409, error: 'conflict', message: 'cannot pause a sandbox that is paused' }));
    await assert.rejects(Sandbox.create('base', { url, apiKey: KEY, limits: { memoryMiB: 1 } }), (e) => e instanceof InvalidArgumentError && e.field === 'limits.memoryMiB');
    const sb = await Sandbox.get('aaaaaaaaaa', { url, apiKey: KEY });
    await assert.rejects(sb.snapshot(), (e) => e instanceof UnsupportedError && /bhyve backend v1/.test(e.message));
    await assert.rejects(sb.pause(), ConflictError);
    await assert.rejects(Sandbox.get('zzzzzzzzzz', { url, apiKey: KEY }), NotFoundError);
  });
});

describe('CoppiceClient', () => {
  it('templates, reload, pools, drain, snapshots, health', async () => {
    routes.set('GET /templates', (_q, res) => json(res, 200, [{ name: 'base', path: '/t/base-template', backend: 'jail' }]));
    routes.set('POST /templates/reload', (_q, res) => json(res, 200, { templates: [], warnings: ['w'] }));
    routes.set('GET /pool', (_q, res) => json(res, 200, [{ template: 'vm', backend: 'bhyve', state: 'idle', available: 2, inUse: 1 }]));
    routes.set('POST /pool/vm/drain', (_q, res) => json(res, 200, { template: 'vm', available: 0, inUse: 1 }));
    routes.set('GET /snapshots', (_q, res) => json(res, 200, []));
    routes.set('DELETE /snapshots/snap-aaaaaaaaaa', (_q, res) => json(res, 204));
    routes.set('GET /health', (_q, res) => json(res, 503, { status: 'draining' }));
    const c = new CoppiceClient({ url, apiKey: KEY });
    assert.equal((await c.templates())[0]!.backend, 'jail');
    assert.deepEqual((await c.reloadTemplates()).warnings, ['w']);
    assert.equal((await c.pools())[0]!.inUse, 1);
    assert.equal((await c.drainPool('vm')).available, 0);
    assert.deepEqual(await c.snapshots(), []);
    await c.deleteSnapshot('snap-aaaaaaaaaa');
    assert.deepEqual(await c.health(), { status: 'draining' });
  });

  it('warmPool streams progress from NDJSON and returns the result; errors in the stream are typed', async () => {
    routes.set('POST /pool/vm/warm', (req, res) => {
      assert.equal(req.headers.accept, 'application/x-ndjson');
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write('{"progress":"booting vm-1"}\n{"progress":"vm-1 re');
      setTimeout(() => res.end('ady"}\n{"done":{"template":"vm","available":1,"inUse":0}}\n'), 20);
    });
    const c = new CoppiceClient({ url, apiKey: KEY });
    const lines: string[] = [];
    const r = await c.warmPool('vm', 1, { onProgress: (l) => lines.push(l) });
    assert.deepEqual(lines, ['booting vm-1', 'vm-1 ready']);
    assert.deepEqual(r, { template: 'vm', available: 1, inUse: 0 });
    assert.deepEqual(seen.at(-1)!.body, { count: 1 });

    routes.set('POST /pool/vm/warm', (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.end('{"progress":"booting"}\n{"error":{"code":409,"error":"conflict","message":"a warm or drain of this pool is already in progress"}}\n');
    });
    await assert.rejects(c.warmPool('vm', 1, { onProgress: () => {} }), (e) => e instanceof ConflictError && /already in progress/.test(e.message));

    routes.set('POST /pool/vm/warm', (_q, res) => json(res, 501, { code: 501, error: 'unsupported', message: 'warm pool not supported on jail backend v1' }));
    await assert.rejects(c.warmPool('vm', 1, { onProgress: () => {} }), UnsupportedError);

    routes.set('POST /pool/vm/warm', (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.end('{"progress":"booting"}\n');
    });
    await assert.rejects(c.warmPool('vm', 1, { onProgress: () => {} }), ConnectionError);

    // Without onProgress: one plain JSON call.
    routes.set('POST /pool/vm/warm', (req, res) => json(res, 200, { template: 'vm', available: 3, inUse: 0, accept: req.headers.accept ?? null }));
    assert.equal((await c.warmPool('vm', 3)).available, 3);
    assert.notEqual(seen.at(-1)!.accept, 'application/x-ndjson');
  });
});
