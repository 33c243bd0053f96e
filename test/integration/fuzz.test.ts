// Fuzzing the edge: thousands of generated malformed and hostile requests (fast-check arbitraries
// shaped like the zod schemas in src/protocol/requests.ts, plus hostile values, bad JSON, wrong
// content-types, bad methods, odd paths with encoded slashes, bad auth, broken HTTP framing)
// against every route the router has (coppice's, E2B's /v2, devtools), a slice against the E2B envd
// surface (E2b-Sandbox-Id), and hostile WebSocket exec sessions (every message type, malformed
// JSON, unknown types, binary garbage first, invalid UTF-8, oversized frames, attach to unknown
// ids), against ONE in-process gateway with two real busybox sandboxes.
//
// Asserted for every response: no 5xx but the documented ones (501 unsupported, 502 backend_failed),
// every error body is JSON {code, error, message} with code === HTTP status (envd: its own E2B/Connect
// shapes, status only); WebSocket error messages likewise (4xx) and closes only with the documented
// codes. Afterwards: no crash, no unhandled rejection, no error-level log line, a normal create +
// exec works, and nothing the fuzz created is left (gateway list, snapshots, host objects by id).
// Failures that match a bug filed outside the edge (KNOWN_BUGS, each pinned by a `todo` test) are
// counted and printed instead of failing the run.
//
// Reproduce a run with COPPICE_FUZZ_SEED=<seed printed in the log>. Sizes: COPPICE_FUZZ_REST,
// COPPICE_FUZZ_WS; COPPICE_FUZZ_DUMP=<dir> writes every failure; COPPICE_FUZZ_VERBOSE=1 reports slow
// requests. Needs root (real runc sandboxes).
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { WebSocket } from 'ws';
import { findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { badJsonBytes, field, hostileString, hostileValue, type J, Obj, pct, ser, shape } from '../helpers/hostile.ts';
import { startJailApp, sleep, type JailApp } from '../helpers/jail-app.ts';
import { rawExchange, type RawResponse } from '../helpers/raw-http.ts';

const root = process.getuid?.() === 0;
const skip = root ? false : 'needs root (runc sandboxes)';
const SEED = Number(process.env.COPPICE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const REST_RUNS = Number(process.env.COPPICE_FUZZ_REST ?? 5000);
const WS_RUNS = Number(process.env.COPPICE_FUZZ_WS ?? 700);
const CONCURRENCY = Number(process.env.COPPICE_FUZZ_CONCURRENCY ?? 8);

// Placeholders resolved at send time (real sandboxes can be replaced while the fuzz runs).
const REAL = ['@REAL0@', '@REAL1@'];
const PROC_RUNNING = '@PROC_RUNNING@';
const PROC_DONE = '@PROC_DONE@';

/** 5xx the API documents (DESIGN.md, src/errors.ts); anything else is a bug. */
const DOCUMENTED_5XX: Record<number, string> = { 501: 'unsupported', 502: 'backend_failed' };
/** WebSocket close codes the exec endpoint documents, plus the protocol's own (ws/exec.ts). */
const OK_CLOSE = new Set([1000, 1005, 1006, 1007, 1009, 4400, 4401, 4404, 4409]);

let g: JailApp;
const live: string[] = []; // the real sandboxes the placeholders resolve to
const everSandbox = new Set<string>(); // every sandbox id that ever existed, for the leak check
const fuzzSnapshots = new Set<string>();
let procRunning = '';
let procDone = '';
const unhandled: string[] = [];
const onRejection = (r: unknown) => unhandled.push(`unhandledRejection: ${String((r as Error)?.stack ?? r)}`);
const onException = (e: unknown) => unhandled.push(`uncaughtException: ${String((e as Error)?.stack ?? e)}`);

// ---- REST: routes, request specs ----

const latin1Safe = (s: string) => s.replace(/[^\t\x20-\x7e\x80-\xff]/g, '');

interface RouteInfo {
  method: string;
  pattern: string;
}

type BodySpec = { kind: 'none' } | { kind: 'json'; v: J } | { kind: 'bytes'; b: Buffer } | { kind: 'big'; n: number };

interface ReqSpec {
  route: RouteInfo;
  method: string | null;
  params: Record<string, string>;
  pathMut: number;
  query: string;
  randomPath: string;
  body: BodySpec;
  auth: number;
  contentType: string | undefined;
  accept: string | undefined;
  extra: [string, string][];
  raw: number; // -1: through http.request; else a raw-framing flavour
  /** The E2B envd surface instead of the router: E2b-Sandbox-Id names the sandbox, `envdPath` the call. */
  envd: { sandbox: string; path: string; body: J; contentType: string } | null;
}

const SAFE_CMDS = ['true', 'echo hi', 'echo out; echo err >&2; exit 3', 'sleep 0.2; echo done', 'head -c 300000 /dev/zero', 'cat', 'id -un', 'pwd', 'env'];
const SAFE_ARGVS = [['true'], ['echo', 'hi'], ['cat'], ['sh', '-c', 'exit 7'], ['/no/such/binary'], ['ls', '/'], ['printf', '%s\\0', 'a b', "c'd"]];
const envKey = fc.constantFrom('A', 'PATH', 'HOME', 'X_1', 'LANG', '_');
const envMap: fc.Arbitrary<J> = fc.array(fc.tuple(envKey, fc.constantFrom('1', '', 'x y', '$(id)')), { maxLength: 3 }).map((p) => new Obj(p));
const metadataMap: fc.Arbitrary<J> = fc.array(fc.tuple(fc.constantFrom('owner', 'k', 'x'.repeat(128)), fc.constantFrom('me', '', 'é')), { maxLength: 3 }).map((p) => new Obj(p));
const limitsObj: fc.Arbitrary<J> = shape({
  memoryMiB: field(fc.constantFrom(16, 64, 256, 1024 * 1024)),
  cpus: field(fc.constantFrom(0.05, 0.5, 1, 256)),
  pids: field(fc.constantFrom(8, 64, 1_000_000)),
});
// Valid timeouts here are >= 600 s: a tiny valid timeout on a real sandbox would (correctly) kill it.
const bigTimeout = fc.integer({ min: 600, max: 30 * 24 * 3600 });

function bodyFor(route: RouteInfo): fc.Arbitrary<J> {
  const key = `${route.method} ${route.pattern}`;
  switch (key) {
    case 'POST /sandboxes':
      return shape(
        {
          // Valid template names are rare: a valid create makes a real sandbox (destroyed at once).
          templateID: field(fc.oneof({ weight: 1, arbitrary: fc.constant('busybox') }, { weight: 12, arbitrary: fc.constantFrom('nope', 'base-template', 'Busybox', 'a.b', '-x') })),
          snapshotID: field(fc.constantFrom('snap-aaaaaaaaaa', 'snap-0123456789')),
          timeout: field(fc.integer({ min: 1, max: 3600 })),
          metadata: field(metadataMap),
          envVars: field(envMap),
          limits: field(limitsObj),
          allow_internet_access: field(fc.boolean()),
        },
        { required: ['templateID'] },
      );
    case 'POST /sandboxes/:id/exec':
      return shape(
        {
          cmd: field(fc.constantFrom(...SAFE_CMDS)),
          argv: field(fc.constantFrom(...SAFE_ARGVS)),
          env: field(envMap),
          cwd: field(fc.constantFrom('/', '/tmp', '/root', '/nonexistent', '/etc/passwd')),
          user: field(fc.constantFrom('root', 'nobody', 'user', 'zz', 'daemon')),
          timeoutMs: field(fc.constantFrom(0, 1, 100, 5000)),
          stdin: field(fc.constantFrom('', 'hello\n', '\u0000\u00ff')),
        },
        { required: ['cmd'] },
      );
    case 'POST /sandboxes/:id/fork':
      return shape({ timeout: field(bigTimeout), metadata: field(metadataMap) });
    case 'POST /sandboxes/:id/timeout':
      return shape({ timeout: field(bigTimeout) }, { required: ['timeout'] });
    case 'POST /sandboxes/:id/connect':
      return shape({ timeout: field(bigTimeout) });
    case 'POST /pool/:name/warm':
      return shape({ count: field(fc.constantFrom(0, 1, 1000, 1001)) }, { required: ['count'] });
    default:
      return hostileValue;
  }
}

/** How often an `:id` is a real sandbox, per route (never for DELETE; rarely where it creates). */
function realIdWeight(route: RouteInfo): number {
  if (route.method === 'DELETE') return 0;
  if (!route.pattern.startsWith('/sandboxes/:id')) return 0;
  if (/\/(fork|snapshot)$/.test(route.pattern)) return 1;
  if (/\/pause$/.test(route.pattern)) return 4;
  return 14;
}

const idLiteral: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.stringMatching(/^[a-z0-9]{10}$/) },
  { weight: 3, arbitrary: hostileString.map((s) => pct(s.slice(0, 3000)) || 'x') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '%2F', '..%2F..%2Fetc%2Fpasswd', '%2e%2e', '..', '.', '%00', '%E0%A4%A', '%', '%zz', 'a%2Fb', '%C0%AF', '%252F', 'zzzzzzzzzz%00',
      'ZZZZZZZZZZ', 'zzzzzzzzz', 'zzzzzzzzzzz', '%ED%A0%80', '%FF%FE', 'snap-aaaaaaaaaa', 'busybox', '%20', '+', '%2B', '%0D%0AX:1', '@REAL0@%00',
    ),
  },
);

function paramArb(route: RouteInfo, key: string): fc.Arbitrary<string> {
  if (key === 'name') return fc.oneof({ weight: 2, arbitrary: fc.constantFrom('busybox', 'base', 'python-bhyve') }, { weight: 3, arbitrary: idLiteral });
  if (route.pattern.startsWith('/snapshots')) return fc.oneof(fc.constantFrom('snap-aaaaaaaaaa', 'snap-zzzzzzzzzz'), idLiteral);
  const w = realIdWeight(route);
  return w === 0
    ? idLiteral
    : fc.oneof({ weight: w, arbitrary: fc.constantFrom(...REAL) }, { weight: 20 - w, arbitrary: idLiteral });
}

const HTTP_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'PROPFIND', 'PURGE', 'SEARCH', 'MKCOL'];
const CONTENT_TYPES = [
  'application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=----x',
  'application/json; charset=utf-16le', 'application/xml', '*/*', '', 'application/x-ndjson', 'ÿ',
];

// The envd surface (src/e2b/envd.ts): Connect RPC (JSON), /files, /health, for a sandbox named in a header.
const ENVD_PATHS = [
  '/health', '/files', '/files?path=/etc/hostname', '/files?path=../../../etc/shadow', '/files?path=/proc/self/environ&username=root',
  '/files?path=%00&username=..', '/process.Process/List', '/process.Process/Start', '/process.Process/SendSignal', '/process.Process/SendInput',
  '/process.Process/CloseStdin', '/process.Process/Update', '/filesystem.Filesystem/Stat', '/filesystem.Filesystem/ListDir',
  '/filesystem.Filesystem/MakeDir', '/filesystem.Filesystem/Move', '/filesystem.Filesystem/Remove', '/filesystem.Filesystem/CreateWatcher',
  '/filesystem.Filesystem/GetWatcherEvents', '/filesystem.Filesystem/RemoveWatcher', '/process.Process/Nope', '/nope',
];
const fsPath = fc.constantFrom('/', '/tmp', '/tmp/fuzz', '/etc/passwd', '../../etc', '/proc/self/root', '', '/dev/zero', '/tmp/../..');
const envdBody: fc.Arbitrary<J> = fc.oneof(
  shape({ path: field(fsPath), depth: field(fc.constantFrom(0, 1, 100)), username: field(fc.constantFrom('root', 'user', 'nobody')) }, { required: ['path'] }),
  shape({ source: field(fsPath), destination: field(fsPath) }, { required: ['source', 'destination'] }),
  shape({ process: field(shape({ pid: field(fc.constantFrom(1, 0, 999999)) })), signal: field(fc.constantFrom('SIGNAL_SIGKILL', 'SIGNAL_SIGTERM', 99)), input: field(shape({ stdin: field(fc.constantFrom('aGk=', '!!')) })) }),
  shape({ process: field(shape({ cmd: field(fc.constantFrom('/bin/echo', 'true', '/no/such')), args: field(fc.constantFrom(['a'], [])), cwd: field(fsPath) }, { required: ['cmd'] })) }, { required: ['process'] }),
  shape({ watcherId: field(fc.constantFrom('w1', '', 'x'.repeat(300))) }),
  hostileValue,
);
const envdArb = fc.record({
  sandbox: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...REAL) }, { weight: 2, arbitrary: hostileString.map((v) => latin1Safe(v.slice(0, 100))) }),
  path: fc.constantFrom(...ENVD_PATHS),
  body: envdBody,
  contentType: fc.constantFrom('application/json', 'application/proto', 'application/connect+json', 'multipart/form-data; boundary=x', 'text/plain'),
});

function reqSpecArb(routes: RouteInfo[]): fc.Arbitrary<ReqSpec> {
  return fc.nat({ max: routes.length - 1 }).chain((i) => {
    const route = routes[i]!;
    const keys = [...route.pattern.matchAll(/:([a-zA-Z]+)/g)].map((m) => m[1]!);
    const params = fc.record(Object.fromEntries(keys.map((k) => [k, paramArb(route, k)])) as Record<string, fc.Arbitrary<string>>);
    const body: fc.Arbitrary<BodySpec> = fc.oneof(
      { weight: 60, arbitrary: bodyFor(route).map((v) => ({ kind: 'json' as const, v })) },
      { weight: 6, arbitrary: hostileValue.map((v) => ({ kind: 'json' as const, v })) },
      { weight: 10, arbitrary: badJsonBytes.map((b) => ({ kind: 'bytes' as const, b })) },
      { weight: 22, arbitrary: fc.constant({ kind: 'none' as const }) },
      { weight: 2, arbitrary: fc.constantFrom(300_000, 2_000_000, 6_000_000).map((n) => ({ kind: 'big' as const, n })) },
    );
    return fc.record({
      route: fc.constant(route),
      method: fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: fc.constantFrom(...HTTP_METHODS) }),
      params,
      pathMut: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 8, arbitrary: fc.integer({ min: 1, max: 7 }) }),
      query: fc.array(fc.tuple(hostileString, hostileString), { maxLength: 3 }).map((q) => q.map(([k, v]) => `${pct(k.slice(0, 200))}=${pct(v.slice(0, 200))}`).join('&')),
      randomPath: fc.array(fc.oneof(hostileString.map((s) => pct(s.slice(0, 100))), fc.constantFrom('sandboxes', 'exec', 'pool', 'snapshots', '%2F', '..', '.', '')), { minLength: 1, maxLength: 6 }).map((s) => '/' + s.join('/')),
      body,
      auth: fc.oneof({ weight: 30, arbitrary: fc.constant(0) }, { weight: 10, arbitrary: fc.integer({ min: 1, max: 9 }) }),
      contentType: fc.option(fc.constantFrom(...CONTENT_TYPES), { freq: 4, nil: undefined }),
      accept: fc.option(fc.constantFrom('application/x-ndjson', 'text/html', '*/*', 'application/json'), { freq: 3, nil: undefined }),
      extra: fc.array(
        fc.oneof(
          fc.constant<[string, string]>(['expect', '100-continue']),
          fc.constant<[string, string]>(['x-forwarded-for', '127.0.0.1, ::1']),
          fc.constant<[string, string]>(['x-big', 'v'.repeat(10_000)]),
          fc.constant<[string, string]>(['cookie', 'a=b; c=d']),
          fc.constant<[string, string]>(['content-encoding', 'gzip']),
          fc.constant<[string, string]>(['transfer-encoding', 'chunked']),
          hostileString.map((v): [string, string] => ['x-hostile', v.slice(0, 500)]),
        ),
        { maxLength: 2 },
      ),
      raw: fc.oneof({ weight: 9, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 12 }) }),
      envd: fc.oneof({ weight: 15, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: envdArb }),
    });
  });
}

function resolve(s: string): string {
  return s
    .replaceAll('@REAL0@', live[0] ?? 'gone000000')
    .replaceAll('@REAL1@', live[1] ?? live[0] ?? 'gone000000')
    .replaceAll(PROC_RUNNING, procRunning)
    .replaceAll(PROC_DONE, procDone);
}

function pathOf(spec: ReqSpec): string {
  let p = spec.route.pattern.replace(/:([a-zA-Z]+)/g, (_, k: string) => resolve(spec.params[k] ?? 'x'));
  switch (spec.pathMut) {
    case 1: p += '/'; break;
    case 2: p += `?${spec.query}`; break;
    case 3: p = `/${p}`; break;
    case 4: p = p.replace(/\/([^/]*)$/, '/./$1'); break;
    case 5: p = spec.randomPath; break;
    case 6: p = p.replace(/\//g, '%2F'); break;
    case 7: p = `${p}/extra/../${spec.query ? `?${spec.query}` : ''}`; break;
  }
  return p;
}

function bodyBytes(spec: ReqSpec): Buffer | undefined {
  const b = spec.body;
  if (b.kind === 'none') return undefined;
  if (b.kind === 'bytes') return b.b;
  if (b.kind === 'big') return Buffer.from(`{"cmd":"${'a'.repeat(b.n)}"}`);
  return Buffer.from(resolve(ser(b.v)), 'utf8');
}

function authHeaders(spec: ReqSpec, key: string): Record<string, string> {
  switch (spec.auth) {
    case 0: return { authorization: `Bearer ${key}` };
    case 1: return { 'x-api-key': key };
    case 2: return {};
    case 3: return { authorization: 'Bearer wrong-key' };
    case 4: return { authorization: 'Bearer ' };
    case 5: return { authorization: 'Basic dXNlcjpwYXNz' };
    case 6: return { authorization: `bearer ${key}` };
    case 7: return { authorization: `Bearer ${key} extra` };
    case 8: return { 'x-api-key': `${key}\u00e9` };
    default: return { authorization: `Bearer ${key}`, 'x-api-key': 'wrong' };
  }
}


interface Outcome {
  status?: number;
  headers?: Record<string, string | string[] | undefined>;
  body?: Buffer;
  error?: string;
  notSent?: boolean;
}

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });

function sendHttp(method: string, path: string, headers: Record<string, string>, body: Buffer | undefined): Promise<Outcome> {
  return new Promise((resolveP) => {
    let req;
    try {
      const u = new URL(g.url);
      req = httpRequest({ agent, host: u.hostname, port: Number(u.port), method, path, headers, timeout: 60_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolveP({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', (e) => resolveP({ status: res.statusCode, error: `response: ${e.message}` }));
      });
    } catch (e) {
      return resolveP({ notSent: true, error: (e as Error).message });
    }
    req.on('timeout', () => req.destroy(new Error('client timeout (60 s): the gateway never answered')));
    req.on('error', (e: NodeJS.ErrnoException) => resolveP({ error: e.code ?? e.message }));
    req.end(body);
  });
}

/** Requests a client library refuses to write: broken framing, odd methods and versions, huge headers. */
function rawBytes(spec: ReqSpec, path: string, key: string, body: Buffer | undefined): { parts: Buffer[]; endAfterWrite: boolean; vanish: boolean } {
  const m = spec.method ?? spec.route.method;
  const b = body ?? Buffer.alloc(0);
  const auth = `Authorization: Bearer ${key}\r\n`;
  const head = (line: string, extra = '') => Buffer.from(`${line}\r\nHost: x\r\n${auth}Connection: close\r\n${extra}`, 'latin1');
  const cl = `Content-Length: ${b.length}\r\n\r\n`;
  switch (spec.raw) {
    case 0: {
      const utf8Path = resolve(spec.route.pattern.replace(/:([a-zA-Z]+)/g, 'é ü\u0000'));
      return { parts: [Buffer.from(`${m} `), Buffer.from(utf8Path, 'utf8'), Buffer.from(` HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n${cl}`, 'latin1'), b], endAfterWrite: false, vanish: false };
    }
    case 1: return { parts: [head(`${m.toLowerCase()} ${path} HTTP/1.1`, cl), b], endAfterWrite: false, vanish: false };
    case 2: return { parts: [head(`${m} ${path} HTTP/1.1`, `Transfer-Encoding: chunked\r\n${cl}`), b], endAfterWrite: false, vanish: false };
    case 3: // the client vanishes mid-body: promises more than it sends, then closes its side
      return { parts: [head(`${m} ${path} HTTP/1.1`, `Content-Length: ${b.length + 1000}\r\n\r\n`), b], endAfterWrite: true, vanish: true };
    case 4: return { parts: [head(`${m} ${path} HTTP/1.1`, 'Transfer-Encoding: chunked\r\n\r\n'), Buffer.from(`zz\r\n${b.toString('latin1')}\r\n0\r\n\r\n`, 'latin1')], endAfterWrite: false, vanish: false };
    case 5: return { parts: [head(`${m} ${path} HTTP/${['1.0', '2.0', '0.9', '9.9', '1.1x'][b.length % 5]}`, cl), b], endAfterWrite: false, vanish: false };
    case 6: return { parts: [head(`${m} ${path} HTTP/1.1`, `X-No-Colon\r\nX-Fold: a\r\n  b\r\n${cl}`), b], endAfterWrite: false, vanish: false };
    case 7: return { parts: [head(`${m} ${['http://evil.example', '*', '', 'sandboxes', '/\\..\\sandboxes'][b.length % 5]}${path} HTTP/1.1`, cl), b], endAfterWrite: false, vanish: false };
    case 8: return { parts: [head(`${m} ${path} HTTP/1.1`, `X-Huge: ${'h'.repeat(70_000)}\r\n${cl}`), b], endAfterWrite: false, vanish: false };
    case 9: return { parts: [head(`${m} ${path} HTTP/1.1`, `Expect: ${['teapot', '100-continue, x', 'x'][b.length % 3]}\r\n${cl}`), b], endAfterWrite: false, vanish: false };
    case 10: return { parts: [Buffer.from(`${m} ${path}\u0000 HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n${cl}`, 'latin1'), b], endAfterWrite: false, vanish: false };
    case 11: return { parts: [Buffer.from(`${m} ${path} HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: -5\r\nConnection: close\r\n\r\n`, 'latin1'), b], endAfterWrite: false, vanish: false };
    default: return { parts: [Buffer.from(`${m} ${path} HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${b.length}\r\nContent-Length: ${b.length + 1}\r\nConnection: close\r\n\r\n`, 'latin1'), b], endAfterWrite: false, vanish: false };
  }
}

interface Stats {
  sent: number;
  byStatus: Map<number, number>;
  failures: string[];
  documented5xx: string[];
  created: number;
  rawNoResponse: number;
}

function describeReq(method: string, path: string, body: Buffer | undefined): string {
  const b = body === undefined ? '' : ` body=${JSON.stringify(body.subarray(0, 160).toString('utf8'))}${body.length > 160 ? `…(${body.length} B)` : ''}`;
  return `${method} ${path.slice(0, 200)}${b}`;
}

/** The contract for one response. Returns what is wrong, or null. */
function checkResponse(method: string, status: number, headers: Record<string, string | string[] | undefined>, body: Buffer, stats: Stats, what: string): string | null {
  stats.byStatus.set(status, (stats.byStatus.get(status) ?? 0) + 1);
  if (status >= 500) {
    const allowed = DOCUMENTED_5XX[status];
    let parsed: { error?: string; message?: string } | undefined;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      /* checked below */
    }
    if (!allowed || parsed?.error !== allowed) return `undocumented ${status}: ${body.subarray(0, 300).toString()}`;
    stats.documented5xx.push(`${status} ${parsed.message} <- ${what}`);
  }
  if (status >= 400 && method !== 'HEAD') {
    const ct = String(headers['content-type'] ?? '');
    if (!ct.startsWith('application/json')) return `error ${status} with content-type ${JSON.stringify(ct)}: ${JSON.stringify(body.subarray(0, 200).toString())}`;
    let e: { code?: unknown; error?: unknown; message?: unknown };
    try {
      e = JSON.parse(body.toString('utf8'));
    } catch {
      return `error ${status} body is not JSON: ${JSON.stringify(body.subarray(0, 200).toString())}`;
    }
    if (e.code !== status) return `error body code ${JSON.stringify(e.code)} !== status ${status}`;
    if (typeof e.message !== 'string' || e.message.length === 0) return `error ${status} without a message`;
    if (typeof e.error !== 'string') return `error ${status} without an error code string`;
  }
  return null;
}

const freezerAlive = (id: string) => existsSync(`/sys/fs/cgroup/freezer/coppice/${id}/freezer.state`);
/**
 * Failures that come from bugs outside the edge, filed and pinned by a `todo` test in
 * faults.test.ts; counted and printed here, not failed on (so the fuzz keeps guarding the rest).
 */
// Empty: every bug the fuzz found has been fixed; add an entry (with a todo test) to file a new one.
const KNOWN_BUGS: { failure: RegExp; log: RegExp; bug: string }[] = [];
const known = (failure: string) => KNOWN_BUGS.find((k) => k.failure.test(failure));

const verbose = (msg: string) => {
  if (process.env.COPPICE_FUZZ_VERBOSE) process.stderr.write(`[fuzz] ${msg}\n`);
};

/** COPPICE_FUZZ_DUMP=<dir>: every failure, one per line, for triage. */
function dump(kind: string, failures: string[]): void {
  const dir = process.env.COPPICE_FUZZ_DUMP;
  if (dir && failures.length) writeFileSync(join(dir, `fuzz-${kind}-${SEED}.txt`), failures.join('\n') + '\n');
}

async function runPool<T>(items: T[], n: number, fn: (t: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

/** Whatever a 2xx created is destroyed at once: the fuzz keeps only the two real sandboxes. */
async function reap(path: string, status: number, body: Buffer | undefined, stats: Stats): Promise<void> {
  if (status !== 201 && status !== 200) return;
  let v: { sandboxID?: string; snapshotID?: string } | undefined;
  try {
    v = JSON.parse(body?.toString('utf8') ?? '');
  } catch {
    return;
  }
  if (!v || typeof v !== 'object') return;
  if (v.snapshotID && /^snap-/.test(v.snapshotID) && /snapshot/.test(path)) {
    fuzzSnapshots.add(v.snapshotID);
    stats.created++;
    await g.api('DELETE', `/snapshots/${v.snapshotID}`);
    fuzzSnapshots.delete(v.snapshotID);
  }
  if (v.sandboxID && status === 201 && !live.includes(v.sandboxID)) {
    everSandbox.add(v.sandboxID);
    stats.created++;
    const d = await g.api('DELETE', `/sandboxes/${v.sandboxID}`);
    if (d.status !== 204 && d.status !== 404) stats.failures.push(`cleanup DELETE ${v.sandboxID}: ${d.status} ${JSON.stringify(d.body)}`);
  }
}

async function createReal(): Promise<string> {
  const r = await g.api('POST', '/sandboxes', { templateID: 'busybox', timeout: 3600 });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  everSandbox.add(r.body.sandboxID);
  return r.body.sandboxID;
}

/** Keep two real sandboxes running (the fuzz may pause them, or legitimately end one). */
async function refreshReal(): Promise<number> {
  let replaced = 0;
  for (let i = 0; i < 2; i++) {
    const id = live[i];
    const v = id ? await g.api('GET', `/sandboxes/${id}`) : { status: 404, body: undefined };
    if (v.status === 404 || (v.body?.state === 'running' && !freezerAlive(id!))) {
      // Gone (a valid short timeout ended it), or its container vanished under it (killed from outside).
      if (v.status !== 404) await g.api('DELETE', `/sandboxes/${id}`);
      live[i] = await createReal();
      replaced++;
    } else if (v.body?.state === 'paused') {
      await g.api('POST', `/sandboxes/${id}/resume`);
    }
  }
  return replaced;
}

// ---- WebSocket exec sessions ----

type WsFrame = { kind: 'text'; s: string } | { kind: 'json'; v: J } | { kind: 'bin'; b: Buffer } | { kind: 'badutf8' } | { kind: 'huge' };

interface WsSpec {
  target: string;
  auth: number;
  pathMut: number;
  first: WsFrame;
  rest: WsFrame[];
  ending: number; // 0 wait for the server to close, 1 close, 2 terminate, 3 terminate at once
}

const startShape = shape(
  {
    type: fc.oneof({ weight: 9, arbitrary: fc.constant('start') }, { weight: 1, arbitrary: hostileValue }),
    cmd: field(fc.constantFrom(...SAFE_CMDS)),
    argv: field(fc.constantFrom(...SAFE_ARGVS)),
    env: field(envMap),
    cwd: field(fc.constantFrom('/', '/tmp', '/root', '/nonexistent')),
    user: field(fc.constantFrom('root', 'nobody', 'user', 'zz')),
    timeoutMs: field(fc.constantFrom(0, 100, 1000, 3000)),
    stdin: field(fc.boolean()),
  },
  { required: ['type', 'cmd'] },
);
/** Starts that pass validation (hostile only in ways the schema allows): they run, stream and exit. */
const validStart: fc.Arbitrary<J> = fc
  .tuple(
    fc.oneof(fc.constantFrom(...SAFE_CMDS).map((c): [string, J] => ['cmd', c]), fc.constantFrom(...SAFE_ARGVS).map((a): [string, J] => ['argv', a])),
    fc.option(envMap.map((e): [string, J] => ['env', e]), { nil: undefined }),
    fc.option(fc.constantFrom('/', '/tmp', '/nonexistent').map((c): [string, J] => ['cwd', c]), { nil: undefined }),
    fc.option(fc.constantFrom('root', 'nobody', 'zz').map((u): [string, J] => ['user', u]), { nil: undefined }),
    fc.option(fc.constantFrom(0, 50, 3000).map((t): [string, J] => ['timeoutMs', t]), { nil: undefined }),
    fc.option(fc.boolean().map((b): [string, J] => ['stdin', b]), { nil: undefined }),
  )
  .map(([cmd, ...rest]) => new Obj([['type', 'start'], cmd, ...rest.filter((p): p is [string, J] => p !== undefined)]));
const attachShape = shape(
  {
    type: fc.constant('attach'),
    processID: field(fc.constantFrom(PROC_RUNNING, PROC_DONE, '1', '0', '99999999', '-1', 'x'.repeat(33))),
    from: field(fc.constantFrom(0, 1, 100, 10 ** 12)),
    lossy: field(fc.boolean()),
  },
  { required: ['type', 'processID'] },
);
const controlShape: fc.Arbitrary<J> = fc.oneof(
  shape({ type: fc.constant('stdin'), data: field(fc.constantFrom('aGVsbG8K', '', '!!!not base64', '====', Buffer.alloc(70_000, 7).toString('base64'))) }, { required: ['type', 'data'] }),
  shape({ type: fc.constant('close_stdin') }, { required: ['type'] }),
  shape({ type: fc.constant('signal'), signal: field(fc.constantFrom('SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGWINCH', 'SIGKILL', 'SIGFOO', 'KILL', 'sigterm', '9')) }, { required: ['type', 'signal'] }),
  shape({ type: hostileValue }),
);
const wsFirst: fc.Arbitrary<WsFrame> = fc.oneof(
  { weight: 8, arbitrary: startShape.map((v) => ({ kind: 'json' as const, v })) },
  { weight: 8, arbitrary: validStart.map((v) => ({ kind: 'json' as const, v })) },
  { weight: 4, arbitrary: attachShape.map((v) => ({ kind: 'json' as const, v })) },
  { weight: 2, arbitrary: controlShape.map((v) => ({ kind: 'json' as const, v })) },
  { weight: 2, arbitrary: hostileValue.map((v) => ({ kind: 'json' as const, v })) },
  { weight: 2, arbitrary: badJsonBytes.map((b) => ({ kind: 'text' as const, s: b.toString('utf8') })) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 200 }).map((a) => ({ kind: 'bin' as const, b: Buffer.from(a) })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'badutf8' as const }) },
);
const wsRest: fc.Arbitrary<WsFrame> = fc.oneof(
  { weight: 6, arbitrary: controlShape.map((v) => ({ kind: 'json' as const, v })) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 3000 }).map((a) => ({ kind: 'bin' as const, b: Buffer.from(a) })) },
  { weight: 2, arbitrary: badJsonBytes.map((b) => ({ kind: 'text' as const, s: b.toString('utf8') })) },
  { weight: 1, arbitrary: startShape.map((v) => ({ kind: 'json' as const, v })) },
  { weight: 1, arbitrary: attachShape.map((v) => ({ kind: 'json' as const, v })) },
  { weight: 1, arbitrary: hostileValue.map((v) => ({ kind: 'json' as const, v })) },
);
const wsSpecArb: fc.Arbitrary<WsSpec> = fc.record({
  target: fc.oneof({ weight: 7, arbitrary: fc.constant('@REAL0@') }, { weight: 2, arbitrary: fc.constant('@REAL1@') }, { weight: 2, arbitrary: idLiteral }),
  auth: fc.oneof({ weight: 10, arbitrary: fc.constant(0) }, { weight: 4, arbitrary: fc.integer({ min: 1, max: 5 }) }),
  pathMut: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }),
  first: wsFirst,
  rest: fc.array(wsRest, { maxLength: 5 }),
  ending: fc.nat({ max: 3 }),
});

interface WsStats {
  sessions: number;
  frames: number;
  opened: number;
  refusedUpgrade: Map<number, number>;
  closeCodes: Map<number, number>;
  errors: Map<number, number>;
  started: number;
  exits: number;
  failures: string[];
}

const count = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);

function wsFrameData(f: WsFrame): { data: Buffer | string; binary: boolean } {
  switch (f.kind) {
    case 'text': return { data: f.s, binary: false };
    case 'json': return { data: resolve(ser(f.v)), binary: false };
    case 'bin': return { data: f.b, binary: true };
    case 'badutf8': return { data: Buffer.from([0x7b, 0xc3, 0x28, 0xff, 0x7d]), binary: false };
    case 'huge': return { data: Buffer.alloc(17 * 1024 * 1024, 0x61), binary: false };
  }
}

function runWsSession(spec: WsSpec, st: WsStats): Promise<void> {
  return new Promise((done) => {
    st.sessions++;
    const id = resolve(spec.target);
    const suffix = ['', '/', '?x=%00', '/?a=b'][spec.pathMut] ?? '';
    const url = `${g.url.replace('http', 'ws')}/sandboxes/${id}/exec/ws${suffix}`;
    const headers: Record<string, string> = [
      { authorization: `Bearer ${g.key}` },
      {},
      { authorization: 'Bearer nope' },
      { 'x-api-key': g.key },
      {},
      {},
    ][spec.auth]!;
    const protocols = spec.auth === 4 ? ['coppice.exec.v1', `coppice.key.${g.key}`] : spec.auth === 5 ? ['coppice.exec.v1', 'coppice.key.wrong'] : [];
    const ws = new WebSocket(url, protocols, { headers, maxPayload: 64 * 1024 * 1024 });
    const what = `ws ${id.slice(0, 40)} auth=${spec.auth} first=${wsFrameData(spec.first).data.toString().slice(0, 120)}`;
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      done();
    };
    timer = setTimeout(() => {
      ws.terminate();
      finish();
    }, 15_000);
    ws.on('error', () => undefined);
    ws.on('unexpected-response', (_req, res) => {
      count(st.refusedUpgrade, res.statusCode ?? 0);
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const body = Buffer.concat(chunks).toString();
        try {
          const e = JSON.parse(body) as { code?: number; message?: string };
          if (e.code !== status || typeof e.message !== 'string') st.failures.push(`${what}: upgrade refusal ${status} body ${body}`);
        } catch {
          st.failures.push(`${what}: upgrade refusal ${status} is not JSON: ${body.slice(0, 200)}`);
        }
        if (status >= 500) st.failures.push(`${what}: upgrade refused with ${status}`);
        // With a good key, a real sandbox and a plain path the upgrade must succeed.
        if (spec.auth !== 1 && spec.auth !== 2 && spec.auth !== 5 && spec.target.startsWith('@REAL') && status !== 404) {
          st.failures.push(`${what}: upgrade refused with ${status} for a real sandbox and a good key`);
        }
        finish();
      });
      res.on('error', () => finish());
    });
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) return;
      let m: { type?: string; code?: unknown; error?: unknown; message?: unknown };
      try {
        m = JSON.parse(data.toString());
      } catch {
        st.failures.push(`${what}: server sent non-JSON text ${data.subarray(0, 100).toString()}`);
        return;
      }
      if (m.type === 'started') st.started++;
      else if (m.type === 'exit') st.exits++;
      else if (m.type === 'error') {
        const code = m.code as number;
        count(st.errors, code);
        if (!(typeof code === 'number' && code >= 400 && code < 500) || typeof m.error !== 'string' || typeof m.message !== 'string') {
          st.failures.push(`${what}: bad error message ${data.toString().slice(0, 300)}`);
        }
      } else if (!['attached', 'dropped'].includes(m.type ?? '')) st.failures.push(`${what}: unknown server message ${data.toString().slice(0, 200)}`);
    });
    ws.on('close', (code) => {
      count(st.closeCodes, code);
      if (!OK_CLOSE.has(code)) st.failures.push(`${what}: closed with ${code}`);
      finish();
    });
    ws.on('open', async () => {
      st.opened++;
      const frames = [spec.first, ...spec.rest];
      for (const f of frames) {
        if (ws.readyState !== WebSocket.OPEN) break;
        const { data, binary } = wsFrameData(f);
        ws.send(data, { binary });
        st.frames++;
        if (spec.ending !== 3) await sleep(5);
      }
      if (spec.ending === 1) ws.close(1000);
      else if (spec.ending >= 2) ws.terminate();
      else setTimeout(() => ws.readyState === WebSocket.OPEN && ws.close(1000), 2_000);
    });
  });
}

// ---- the suite ----

describe('fuzz: hostile REST and WebSocket input against one gateway', { skip, timeout: 240_000 }, () => {
  let routes: RouteInfo[] = [];

  before(async () => {
    process.on('unhandledRejection', onRejection);
    process.on('uncaughtException', onException);
    g = await startJailApp();
    live.push(await createReal(), await createReal());
    routes = (g.app.edge.router as unknown as { routes: RouteInfo[] }).routes.map((r) => ({ method: r.method, pattern: r.pattern }));
    // A long-running command and a finished one in live[0], for attach by real process ids.
    const startWs = async (argv: string[]) => {
      const ws = new WebSocket(`${g.url.replace('http', 'ws')}/sandboxes/${live[0]}/exec/ws`, { headers: { authorization: `Bearer ${g.key}` } });
      return new Promise<{ id: string; ws: WebSocket }>((res, rej) => {
        ws.on('error', rej);
        ws.on('open', () => ws.send(JSON.stringify({ type: 'start', argv })));
        ws.on('message', (d: Buffer, bin) => {
          if (bin) return;
          const m = JSON.parse(d.toString());
          if (m.type === 'started') res({ id: m.processID, ws });
          if (m.type === 'error') rej(new Error(d.toString()));
        });
      });
    };
    const running = await startWs(['sh', '-c', 'i=0; while [ $i -lt 600 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done']);
    procRunning = running.id;
    running.ws.close(); // detached: it keeps running
    const finished = await startWs(['echo', 'done']);
    procDone = finished.id;
    await new Promise((r) => finished.ws.once('close', r));
  });

  after(async () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
    agent.destroy();
    if (!g) return;
    for (const s of fuzzSnapshots) await g.api('DELETE', `/snapshots/${s}`).catch(() => undefined);
    for (const id of live) await g.api('DELETE', `/sandboxes/${id}`).catch(() => undefined);
    await g.close();
    assert.deepEqual(await findLeftovers([...everSandbox], { stateDir: g.stateDir }), [], 'host objects left by the fuzz');
  });

  test('the router has every documented route', () => {
    const have = new Set(routes.map((r) => `${r.method} ${r.pattern}`));
    for (const r of [
      'GET /health', 'GET /metrics', 'GET /templates', 'POST /templates/reload', 'POST /sandboxes', 'GET /sandboxes', 'GET /sandboxes/:id',
      'DELETE /sandboxes/:id', 'POST /sandboxes/:id/exec', 'GET /sandboxes/:id/processes', 'POST /sandboxes/:id/pause', 'POST /sandboxes/:id/resume',
      'POST /sandboxes/:id/connect', 'POST /sandboxes/:id/snapshot', 'POST /sandboxes/:id/fork', 'GET /snapshots', 'DELETE /snapshots/:id',
      'POST /sandboxes/:id/timeout', 'GET /pool', 'POST /pool/:name/warm', 'POST /pool/:name/drain', 'GET /sandboxes/:id/exec/ws',
    ]) {
      assert.ok(have.has(r), `route ${r} is registered`);
    }
  });

  test(`REST: ${REST_RUNS} generated hostile requests over every route`, async () => {
    const t0 = performance.now();
    const specs = fc.sample(reqSpecArb(routes), { numRuns: REST_RUNS, seed: SEED });
    const stats: Stats = { sent: 0, byStatus: new Map(), failures: [], documented5xx: [], created: 0, rawNoResponse: 0 };
    const perRoute = new Map<string, number>();
    let replaced = 0;
    let envdSent = 0;
    const envdStatuses = new Map<number, number>();
    const BATCH = 200;
    for (let from = 0; from < specs.length; from += BATCH) {
      const tb = performance.now();
      await runPool(specs.slice(from, from + BATCH), CONCURRENCY, async (spec) => {
        const method = spec.method ?? spec.route.method;
        const path = pathOf(spec);
        const body = bodyBytes(spec);
        const what = describeReq(method, path, body);
        const tr = performance.now();
        const slow = setTimeout(() => verbose(`slow (>5 s): raw=${spec.raw} ${what.slice(0, 300)}`), 5_000);
        try {
          const before = live.map((id) => [id, freezerAlive(id)] as const);
          await sendOne(spec, method, path, body, what);
          if (process.env.COPPICE_FUZZ_WATCH) {
            for (const [id, was] of before) if (was && !freezerAlive(id)) verbose(`container of ${id} vanished after: ${what.slice(0, 400)}`);
          }
        } finally {
          clearTimeout(slow);
          const ms = performance.now() - tr;
          if (ms > 5_000) verbose(`took ${Math.round(ms)} ms: raw=${spec.raw} ${what.slice(0, 300)}`);
        }
      });
      verbose(`batch ${from}: ${Math.round(performance.now() - tb)} ms`);
      assert.equal(g.app.gateway.lifecycle, 'serving', `gateway still serving after ${from + BATCH} requests`);
      replaced += await refreshReal();
    }
    async function sendOne(spec: ReqSpec, method: string, path: string, body: Buffer | undefined, what: string): Promise<void> {
      if (spec.envd) return sendEnvd(spec, spec.envd);
      perRoute.set(`${spec.route.method} ${spec.route.pattern}`, (perRoute.get(`${spec.route.method} ${spec.route.pattern}`) ?? 0) + 1);
      if (spec.raw >= 0) {
        const { parts, endAfterWrite, vanish } = rawBytes(spec, path, g.key, body);
        stats.sent++;
        const r = await rawExchange(Number(new URL(g.url).port), parts, { endAfterWrite, timeoutMs: 30_000 });
        if (!r.ok) {
          // A client that breaks off mid-body may get nothing back; anyone else must get an answer.
          if (vanish && r.error !== 'timeout') stats.rawNoResponse++;
          else stats.failures.push(`raw#${spec.raw} ${what}: no response (${r.error}) ${r.partial.subarray(0, 100).toString()}`);
          return;
        }
        const res: RawResponse = r.res;
        const bad = checkResponse(method, res.status, res.headers, res.body, stats, what);
        if (bad) stats.failures.push(`raw#${spec.raw} ${what}: ${bad}`);
        await reap(path, res.status, res.body, stats);
        return;
      }
      const headers: Record<string, string> = { ...authHeaders(spec, g.key) };
      if (spec.contentType !== undefined) headers['content-type'] = spec.contentType;
      if (spec.accept !== undefined) headers.accept = spec.accept;
      for (const [k, v] of spec.extra) headers[k] = latin1Safe(v);
      if (body && !headers['transfer-encoding']) headers['content-length'] = String(body.length);
      if (headers['transfer-encoding']) delete headers['content-length'];
      for (const k of Object.keys(headers)) headers[k] = latin1Safe(headers[k]!);
      const out = await sendHttp(method, path, headers, body);
      if (out.notSent) return; // the client library refused it (its own validation): not a request
      stats.sent++;
      if (out.status === undefined) {
        stats.failures.push(`${what}: no response (${out.error})`);
        return;
      }
      const bad = checkResponse(method, out.status, out.headers ?? {}, out.body ?? Buffer.alloc(0), stats, what);
      if (bad) stats.failures.push(`${what}: ${bad}`);
      await reap(path, out.status, out.body, stats);
      // A real sandbox paused by the fuzz is resumed at once: requests in flight on it (an exec, a
      // file read) legitimately wait while it is frozen, and would otherwise wait for the batch end.
      const paused = /^\/sandboxes\/([a-z0-9]{10})\/pause/.exec(path);
      if (out.status === 204 && paused && live.includes(paused[1]!)) await g.api('POST', `/sandboxes/${paused[1]}/resume`);
    }
    /** envd: Connect's own error shape ({code: "invalid_argument"}) is E2B's contract there; only status and liveness are checked. */
    async function sendEnvd(spec: ReqSpec, e: NonNullable<ReqSpec['envd']>): Promise<void> {
      envdSent++;
      const method = spec.method === 'GET' || e.path.startsWith('/files') && spec.auth % 2 === 0 ? 'GET' : 'POST';
      const body = method === 'GET' ? undefined : Buffer.from(resolve(ser(e.body)), 'utf8');
      const headers: Record<string, string> = {
        'e2b-sandbox-id': resolve(e.sandbox),
        'x-api-key': g.key,
        'content-type': e.contentType,
        'connect-protocol-version': '1',
        ...(body ? { 'content-length': String(body.length) } : {}),
      };
      const what = `envd ${method} ${e.path} sandbox=${headers['e2b-sandbox-id']!.slice(0, 30)} ${describeReq('', '', body)}`;
      const out = await sendHttp(method, e.path, headers, body);
      if (out.notSent) return;
      stats.sent++;
      if (out.status === undefined) return void stats.failures.push(`${what}: no response (${out.error})`);
      stats.byStatus.set(out.status, (stats.byStatus.get(out.status) ?? 0) + 1);
      envdStatuses.set(out.status, (envdStatuses.get(out.status) ?? 0) + 1);
      // 502: envd's "sandbox not found / not running" (as E2B's edge answers).
      if (out.status >= 500 && out.status !== 502 && out.status !== 501) stats.failures.push(`${what}: ${out.status} ${out.body?.subarray(0, 300).toString()}`);
    }
    const ms = Math.round(performance.now() - t0);
    console.log(`fuzz envd: ${envdSent} requests; statuses ${[...envdStatuses].sort((a, b) => a[0] - b[0]).map(([k, n]) => `${k}:${n}`).join(' ')}`);
    const statuses = [...stats.byStatus].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}:${n}`).join(' ');
    console.log(`fuzz REST seed=${SEED}: ${stats.sent} requests in ${ms} ms; statuses ${statuses}; created+destroyed ${stats.created}; real sandboxes replaced ${replaced}; raw vanished-mid-body without answer ${stats.rawNoResponse}`);
    console.log(`fuzz REST per route: ${[...perRoute].map(([r, n]) => `${r}=${n}`).join(', ')}`);
    if (stats.documented5xx.length) console.log(`fuzz REST documented 5xx (${stats.documented5xx.length}):\n  ${stats.documented5xx.slice(0, 20).join('\n  ')}`);
    assert.ok(stats.sent >= REST_RUNS * 0.98, `sent ${stats.sent} of ${REST_RUNS}`);
    assert.ok(perRoute.size >= routes.length, 'every route got requests');
    dump('rest', stats.failures);
    const knownHits = stats.failures.filter(known);
    if (knownHits.length) console.log(`fuzz REST hit known bugs (${knownHits.length}):\n  ${knownHits.map((f) => `${known(f)!.bug} <- ${f.slice(0, 200)}`).join('\n  ')}`);
    const failures = stats.failures.filter((f) => !known(f));
    assert.deepEqual(failures.slice(0, 25), [], `${failures.length} failing responses (seed ${SEED})`);
  });

  test(`WebSocket exec: ${WS_RUNS} hostile sessions plus oversized frames`, async () => {
    const t0 = performance.now();
    const specs = fc.sample(wsSpecArb, { numRuns: WS_RUNS, seed: SEED + 1 });
    // Oversized frames (over the 16 MiB maxPayload): first, and after a start.
    specs.push(
      { target: '@REAL0@', auth: 0, pathMut: 0, first: { kind: 'huge' }, rest: [], ending: 0 },
      { target: '@REAL1@', auth: 0, pathMut: 0, first: { kind: 'json', v: new Obj([['type', 'start'], ['argv', ['cat']], ['stdin', true]]) }, rest: [{ kind: 'huge' }], ending: 0 },
    );
    const st: WsStats = { sessions: 0, frames: 0, opened: 0, refusedUpgrade: new Map(), closeCodes: new Map(), errors: new Map(), started: 0, exits: 0, failures: [] };
    const BATCH = 100;
    for (let from = 0; from < specs.length; from += BATCH) {
      await runPool(specs.slice(from, from + BATCH), CONCURRENCY, (spec) => runWsSession(spec, st));
      assert.equal(g.app.gateway.lifecycle, 'serving');
      await refreshReal();
    }
    const ms = Math.round(performance.now() - t0);
    const fmt = (m: Map<number, number>) => [...m].sort((a, b) => a[0] - b[0]).map(([k, n]) => `${k}:${n}`).join(' ');
    console.log(
      `fuzz WS seed=${SEED + 1}: ${st.sessions} sessions, ${st.frames} frames in ${ms} ms; opened ${st.opened}; upgrade refusals ${fmt(st.refusedUpgrade)}; ` +
        `close codes ${fmt(st.closeCodes)}; error messages ${fmt(st.errors)}; started ${st.started}; exits ${st.exits}`,
    );
    assert.ok(st.closeCodes.get(1009), 'an oversized frame closes with 1009');
    assert.ok(st.started > 20 && st.exits > 10, 'some hostile-but-valid starts ran to their exit');
    dump('ws', st.failures);
    assert.deepEqual(st.failures.slice(0, 25), [], `${st.failures.length} failing sessions (seed ${SEED + 1})`);
  });

  test('what earlier runs found, pinned: each answers with the JSON error, never a 500, a bare status or a reset', async () => {
    const port = Number(new URL(g.url).port);
    const auth = `Authorization: Bearer ${g.key}\r\n`;
    const json = (r: Awaited<ReturnType<typeof rawExchange>>, status: number, what: string) => {
      assert.ok(r.ok, `${what}: ${!r.ok ? r.error : ''}`);
      assert.equal(r.res.status, status, `${what}: ${r.res.body.toString()}`);
      assert.match(r.res.headers['content-type'] ?? '', /^application\/json/, what);
      return JSON.parse(r.res.body.toString()) as { code: number; error: string; message: string; field?: string };
    };
    // A malformed percent-escape in a path parameter was a 500 (URIError from decodeURIComponent).
    for (const bad of ['%E0%A4%A', '%zz', '%']) {
      const r = await g.api('GET', `/sandboxes/${bad}`);
      assert.equal(r.status, 400, `${bad}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.field, 'id');
    }
    // Requests Node's parser refuses got a bare status line and no body.
    const e1 = json(await rawExchange(port, Buffer.from(`GET %2Fsandboxes HTTP/1.1\r\nHost: x\r\n${auth}\r\n`)), 400, 'request target without a leading /');
    assert.equal(e1.code, 400);
    json(await rawExchange(port, Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\nX-Huge: ${'h'.repeat(70_000)}\r\n\r\n`)), 431, 'headers too large');
    json(await rawExchange(port, Buffer.from(`get /health HTTP/1.1\r\nHost: x\r\n\r\n`)), 400, 'lower-case method');
    json(await rawExchange(port, Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nConnection: close\r\n\r\n`)), 417, 'unsupported Expect');
    // HEAD gets the headers only (a body would be read as the next response).
    const head = await rawExchange(port, Buffer.from(`HEAD %2F HTTP/1.1\r\nHost: x\r\n\r\n`));
    assert.ok(head.ok && head.res.status === 400 && head.res.body.length === 0, JSON.stringify(head));
    // A refused request whose body keeps coming: the client reads the 400, not a reset.
    const big = Buffer.alloc(6_000_000, 97);
    json(await rawExchange(port, [Buffer.from(`POST nopath HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n`), big]), 400, 'bad target with a 6 MB body');
    // A chunked body over the limit: the 413 arrives (it used to be a reset).
    const chunk = Buffer.alloc(1024 * 1024, 32);
    const parts = [Buffer.from(`POST /sandboxes HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\n`)];
    for (let i = 0; i < 34; i++) parts.push(Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n'));
    parts.push(Buffer.from('0\r\n\r\n'));
    json(await rawExchange(port, parts, { timeoutMs: 30_000 }), 413, 'chunked body over the limit');
    assert.equal((await g.api('GET', '/health')).status, 200);
  });

  const envd = (id: string, path: string, contentType: string, body: string | Buffer) =>
    fetch(g.url + path, { method: 'POST', headers: { 'e2b-sandbox-id': id, 'x-api-key': g.key, 'content-type': contentType, 'connect-protocol-version': '1' }, body: typeof body === 'string' ? body : new Uint8Array(body) });

  test(
    'envd Connect RPC: the binary codec is refused with 415 invalid_argument (never a 500), the JSON codec still works',
    async () => {
      const id = live[0]!;
      for (const body of [Buffer.from('{"a":1}'), Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])]) {
        for (const ct of ['application/proto', 'application/connect+proto']) {
          const res = await envd(id, '/filesystem.Filesystem/Stat', ct, body);
          const text = await res.text();
          assert.equal(res.status, 415, text);
          assert.equal(JSON.parse(text).code, 'invalid_argument');
        }
      }
      const ok = await envd(id, '/filesystem.Filesystem/Stat', 'application/json', JSON.stringify({ path: '/' }));
      assert.equal(ok.status, 200, await ok.text());
    },
  );

  test(
    'envd POST /files: a write the sandbox refuses is a 4xx naming the path, not a 500',
    async () => {
      const id = live[0]!;
      for (const path of ['/proc/self/environ', '/proc/1/mem']) {
        const res = await envd(id, `/files?path=${encodeURIComponent(path)}&username=root`, 'application/octet-stream', 'x');
        const text = await res.text();
        assert.ok(res.status >= 400 && res.status < 500, `${path}: ${res.status} ${text}`);
        assert.match(text, new RegExp(path.replace(/\//g, '\\/')));
      }
    },
  );

  test(
    'pool routes: a template name that is an Object.prototype key is a 404 like any unknown template',
    async () => {
      for (const name of ['toString', 'constructor', 'valueOf', 'hasOwnProperty']) {
        for (const [path, body] of [[`/pool/${name}/warm`, { count: 1 }], [`/pool/${name}/drain`, undefined]] as const) {
          const r = await g.api('POST', path, body);
          assert.equal(r.status, 404, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
        }
      }
    },
  );

  test('afterwards: no crash, no unhandled rejection, normal create + exec work, and the fuzz left nothing', async () => {
    assert.deepEqual(unhandled, []);
    assert.equal(g.app.gateway.lifecycle, 'serving');
    assert.equal(g.app.gateway.actor.getSnapshot().status, 'active');
    const internals = g.logs.filter((l) => l.level >= 50 && !KNOWN_BUGS.some((k) => k.log.test(JSON.stringify(l))));
    assert.deepEqual(internals.map((l) => `${l.msg} route=${String(l.route)} ${JSON.stringify(l.err ?? '').slice(0, 300)}`), [], 'no error-level log lines (500s, actor faults)');

    const id = await createReal();
    const e = await g.api('POST', `/sandboxes/${id}/exec`, { cmd: 'echo fine' });
    assert.equal(e.status, 200, JSON.stringify(e.body));
    assert.equal(e.body.exitCode, 0);
    assert.equal(e.body.stdout, 'fine\n');
    assert.equal((await g.api('DELETE', `/sandboxes/${id}`)).status, 204);

    // Only the two real sandboxes are live. Snapshots: every one in this gateway came from a fuzz
    // request (a 201 the reaper could not read, e.g. on a raw socket it cut): each deletes cleanly.
    const list = await g.api('GET', '/sandboxes');
    assert.deepEqual(list.body.map((s: { sandboxID: string }) => s.sandboxID).sort(), [...live].sort());
    for (const snap of (await g.api('GET', '/snapshots')).body as { snapshotID: string }[]) {
      assert.equal((await g.api('DELETE', `/snapshots/${snap.snapshotID}`)).status, 204);
    }
    assert.deepEqual((await g.api('GET', '/snapshots')).body, []);
    for (const r of live.splice(0)) assert.equal((await g.api('DELETE', `/sandboxes/${r}`)).status, 204);
    assert.deepEqual((await g.api('GET', '/sandboxes')).body, []);
    assert.equal(g.backend.pool.inUse, 0, 'every address returned');
    assert.deepEqual(await findLeftovers([...everSandbox], { stateDir: g.stateDir }), []);
  });
});
