// The SDK's E2B-shaped API against a small scripted HTTP server (no gateway, no root): what
// commands / files / connect / lifetimes send, and how they read the answers. The real thing
// end to end: test/integration/sdk-api.test.ts.
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  CommandExitError,
  ConflictError,
  ConnectionError,
  CoppiceApiError,
  CoppiceError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  Sandbox,
} from '../../src/sdk/index.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

let server: Server;
let url: string;
let seen: Seen[] = [];
const routes = new Map<string, (res: ServerResponse, s: Seen) => void>();
const KEY = 'sdk-api-key';
const ID = 'aaaaaaaaaa';

const json = (res: ServerResponse, status: number, body?: unknown) => {
  if (body === undefined) return void res.writeHead(status).end();
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
};
const view = (id: string, extra: object = {}) => ({
  sandboxID: id,
  templateID: 'base',
  backend: 'jail',
  state: 'running',
  lifecycle: 'ready',
  ip: '10.78.0.2',
  startedAt: '2026-01-01T00:00:00.000Z',
  endAt: '2026-01-01T00:05:00.000Z',
  metadata: {},
  limits: { memoryMiB: 512, cpus: 1, pids: 512 },
  cpuCount: 1,
  memoryMB: 512,
  processes: 0,
  allowInternetAccess: false,
  ...extra,
});
const lastBody = () => JSON.parse(seen.at(-1)!.body.toString('utf8') || '{}');

before(async () => {
  server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const s: Seen = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) };
    seen.push(s);
    const h = routes.get(`${req.method} ${req.url}`);
    if (h) return h(res, s);
    json(res, 404, { code: 404, error: 'not_found', message: `no route ${req.method} ${req.url}` });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));
beforeEach(() => {
  seen = [];
  routes.clear();
  routes.set('POST /sandboxes', (res) => json(res, 201, view(ID, { envdAccessToken: 't', clientID: 'c', envdVersion: 'v' })));
});

const create = () => Sandbox.create('base', { url, apiKey: KEY });

describe('lifetimes are milliseconds everywhere', () => {
  it('create / fork / setTimeout / connect send whole seconds, rounded up', async () => {
    routes.set(`POST /sandboxes/${ID}/fork`, (res) => json(res, 201, view('cccccccccc')));
    routes.set(`POST /sandboxes/${ID}/timeout`, (res) => json(res, 204));
    routes.set(`POST /sandboxes/${ID}/connect`, (res) => json(res, 201, view(ID)));
    const sb = await Sandbox.create('base', { url, apiKey: KEY, timeoutMs: 90_500 });
    assert.equal(lastBody().timeout, 91);
    await sb.fork({ timeoutMs: 1_000 });
    assert.deepEqual(lastBody(), { timeout: 1 });
    await sb.setTimeout(0);
    assert.deepEqual(lastBody(), { timeout: 0 });
    const again = await Sandbox.connect(ID, { url, apiKey: KEY, timeoutMs: 600_000 });
    assert.deepEqual([seen.at(-1)!.url, lastBody()], [`/sandboxes/${ID}/connect`, { timeout: 600 }]);
    assert.equal(again.sandboxID, ID);
  });

  it('a lifetime that is not a number of ms is refused before any request, naming the option', async () => {
    for (const bad of [-1, Number.NaN, Infinity, 500]) {
      await assert.rejects(Sandbox.create('base', { url, apiKey: KEY, timeoutMs: bad }), (e) => e instanceof InvalidArgumentError && e.field === 'timeoutMs');
    }
    assert.equal(seen.length, 0);
  });
});

describe('replies have one shape', () => {
  it('create, fork, get and list give the same fields (E2B extras dropped)', async () => {
    routes.set(`POST /sandboxes/${ID}/fork`, (res) => json(res, 201, view('cccccccccc')));
    routes.set(`GET /sandboxes/${ID}`, (res) => json(res, 200, view(ID, { envdAccessToken: 't' })));
    routes.set('GET /sandboxes', (res) => json(res, 200, [view(ID, { clientID: 'c' })]));
    const sb = await create();
    const fork = await sb.fork();
    const keys = Object.keys(sb.info).sort();
    assert.ok(!keys.includes('envdAccessToken'));
    assert.deepEqual(Object.keys(fork.info).sort(), keys);
    assert.deepEqual(Object.keys(await sb.getInfo()).sort(), keys);
    assert.deepEqual(Object.keys((await Sandbox.list({ url, apiKey: KEY }))[0]!).sort(), keys);
  });
});

describe('commands', () => {
  it('run: one REST exec with E2B option names; a non-zero exit is a CommandExitError with the result', async () => {
    let exitCode = 0;
    routes.set(`POST /sandboxes/${ID}/exec`, (res) =>
      json(res, 200, { processID: '7', exitCode, signal: null, stdout: 'out', stderr: 'boom\n', truncated: false, durationMs: 1 }),
    );
    const sb = await create();
    const r = await sb.commands.run('echo hi', { envs: { A: '1' }, cwd: '/tmp', user: 'root', timeoutMs: 5_000, stdin: 'in' });
    assert.equal(r.stdout, 'out');
    assert.deepEqual(lastBody(), { cmd: 'echo hi', env: { A: '1' }, cwd: '/tmp', user: 'root', timeoutMs: 5_000, stdin: 'in' });
    exitCode = 3;
    const err = await sb.commands.run(['false']).then(
      () => assert.fail('no error'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof CommandExitError && err instanceof CoppiceError);
    assert.deepEqual([err.code, err.exitCode, err.stdout, err.stderr], ['command_exit', 3, 'out', 'boom\n']);
    assert.match(err.message, /exited with code 3: boom/);
    assert.ok(!(err instanceof CoppiceApiError));
  });
});

describe('files', () => {
  it('read / write go to /files with the sandbox header and the key; bytes stay bytes', async () => {
    const bytes = Buffer.from([0, 1, 2, 255, 254, 10]);
    routes.set(`GET /files?path=%2Ftmp%2Fb+c&username=root`, (res) => res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(bytes));
    routes.set(`GET /files?path=%2Ftmp%2Ft`, (res) => res.writeHead(200).end('h\u00e9llo'));
    routes.set(`POST /files?path=%2Ftmp%2Fw`, (res) => json(res, 200, [{ name: 'w', path: '/tmp/w', type: 'file' }]));
    const sb = await create();
    const got = await sb.files.read('/tmp/b c', { format: 'bytes', user: 'root' });
    assert.ok(got instanceof Uint8Array);
    assert.deepEqual(Buffer.from(got), bytes);
    assert.equal(seen.at(-1)!.headers['e2b-sandbox-id'], ID);
    assert.equal(seen.at(-1)!.headers['x-api-key'], KEY);
    assert.equal(await sb.files.read('/tmp/t'), 'h\u00e9llo');
    assert.deepEqual(await sb.files.write('/tmp/w', bytes), { name: 'w', path: '/tmp/w', type: 'file' });
    assert.equal(seen.at(-1)!.headers['content-type'], 'application/octet-stream');
    assert.deepEqual(seen.at(-1)!.body, bytes);
    await sb.files.write('/tmp/w', 'text \u00e9');
    assert.equal(seen.at(-1)!.body.toString('utf8'), 'text \u00e9');
  });

  it('list / getInfo / exists / makeDir / remove are Connect JSON calls; entries come back typed', async () => {
    routes.set('POST /filesystem.Filesystem/ListDir', (res) =>
      json(res, 200, {
        entries: [
          { name: 'd', type: 'FILE_TYPE_DIRECTORY', path: '/w/d', size: '4096', mode: 493, permissions: 'drwxr-xr-x', owner: 'user', group: 'user', modifiedTime: '2026-01-01T00:00:00Z' },
          { name: 'l', type: 'FILE_TYPE_SYMLINK', path: '/w/l', size: '3', mode: 511, permissions: 'lrwxrwxrwx', owner: 'user', group: 'user', modifiedTime: '2026-01-01T00:00:00Z', symlinkTarget: 'd' },
        ],
      }),
    );
    routes.set('POST /filesystem.Filesystem/Stat', (res, s) =>
      JSON.parse(s.body.toString()).path === '/nope' ? json(res, 404, { code: 'not_found', message: 'no such file or directory: /nope' }) : json(res, 200, { entry: { name: 'x', type: 'FILE_TYPE_FILE', path: '/x', size: '1' } }),
    );
    routes.set('POST /filesystem.Filesystem/MakeDir', (res) => json(res, 409, { code: 'already_exists', message: 'already exists: /w' }));
    routes.set('POST /filesystem.Filesystem/Remove', (res) => json(res, 200, {}));
    const sb = await create();
    const entries = await sb.files.list('/w', { depth: 2, user: 'user' });
    assert.deepEqual(lastBody(), { path: '/w', depth: 2 });
    assert.equal(seen.at(-1)!.headers['connect-protocol-version'], '1');
    assert.equal(seen.at(-1)!.headers.authorization, `Basic ${Buffer.from('user:').toString('base64')}`);
    assert.deepEqual(
      entries.map((e) => [e.name, e.type, e.size, e.mode, e.symlinkTarget]),
      [
        ['d', 'dir', 4096, 0o755, undefined],
        ['l', 'symlink', 3, 0o777, 'd'],
      ],
    );
    assert.ok(entries[0]!.modifiedTime instanceof Date);
    assert.equal(await sb.files.exists('/x'), true);
    assert.equal(await sb.files.exists('/nope'), false);
    await assert.rejects(sb.files.getInfo('/nope'), (e) => e instanceof NotFoundError && e.code === 'not_found' && e.status === 404);
    assert.equal(await sb.files.makeDir('/w'), false);
    await sb.files.remove('/w/d');
    assert.deepEqual(lastBody(), { path: '/w/d' });
  });

  it('envd refusals become the gateway codes: 403 permission, 502 not running -> conflict, unknown -> not_found', async () => {
    const sb = await create();
    routes.set('GET /files?path=%2Fetc%2Fshadow', (res) => json(res, 403, { code: 403, message: 'permission denied: /etc/shadow' }));
    await assert.rejects(sb.files.read('/etc/shadow'), (e) => e instanceof PermissionDeniedError && e.code === 'permission_denied');
    routes.set('GET /files?path=%2Fa', (res) => json(res, 502, { code: 502, message: `The sandbox ${ID} is paused, not running`, sandboxId: ID }));
    await assert.rejects(sb.files.read('/a'), (e) => e instanceof ConflictError && e.code === 'conflict');
    routes.set('POST /filesystem.Filesystem/ListDir', (res) => json(res, 502, { code: 502, message: `The sandbox ${ID} was not found`, sandboxId: ID }));
    await assert.rejects(sb.files.list('/'), (e) => e instanceof NotFoundError);
  });

  it('nothing listening is a CoppiceError with code unreachable', async () => {
    const sb = await create();
    await new Promise<void>((r) => server.close(() => r()));
    try {
      await assert.rejects(sb.files.read('/x'), (e) => e instanceof ConnectionError && e instanceof CoppiceError && e.code === 'unreachable');
    } finally {
      await new Promise<void>((r) => server.listen(Number(new URL(url).port), '127.0.0.1', r));
    }
  });
});
