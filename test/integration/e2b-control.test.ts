// E2B's control-plane contract where it differs from coppice's own routes, checked with the
// pinned `e2b` SDK (2.51) and with the raw requests older SDKs and the Python SDK send (v1
// `POST /sandboxes`, `X-API-KEY`). Real gateway, real runc sandboxes; every test destroys what
// it created (and `after` sweeps whatever a failed test left).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RateLimitError, Sandbox } from 'e2b';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
let opts: { apiKey: string; apiUrl: string; sandboxUrl: string };
const created = new Set<string>();

async function create(o: Parameters<typeof Sandbox.create>[1] = {}): Promise<Sandbox> {
  const sbx = await Sandbox.create('base', { ...opts, ...o });
  created.add(sbx.sandboxId);
  return sbx;
}

async function kill(id: string): Promise<void> {
  await Sandbox.kill(id, opts);
  created.delete(id);
}

/** A request as the E2B SDKs send it: `X-API-KEY`, no Bearer. */
const e2bApi = (method: string, path: string, body?: unknown) => gw.api(method, path, body, { 'x-api-key': gw.key, authorization: '' });
const liveIds = () => new Set(gw.app.gateway.list().map((v) => v.sandboxID));

before(async () => {
  gw = await startTestGateway();
  opts = { apiKey: gw.key, apiUrl: gw.url, sandboxUrl: gw.url };
});

after(async () => {
  for (const id of created) await Sandbox.kill(id, opts).catch(() => false);
  await gw?.close();
});

test('v1 POST /sandboxes refuses what coppice cannot honour (400 naming the field), as /v2 does; nothing is created', async () => {
  const refused: [string, Record<string, unknown>][] = [
    ['autoPause', { autoPause: true }],
    ['autoResume', { autoResume: { enabled: true } }],
    ['network', { network: { denyOut: ['0.0.0.0/0'] } }],
    ['mcp', { mcp: { 'github/github-mcp-server': {} } }],
    ['volumeMounts', { volumeMounts: [{ name: 'vol', path: '/mnt/vol' }] }],
  ];
  const before = liveIds();
  for (const [field, extra] of refused) {
    for (const path of ['/sandboxes', '/v2/sandboxes']) {
      const r = await e2bApi('POST', path, { templateID: 'base', ...extra });
      assert.equal(r.status, 400, `${path} ${field}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 400);
      assert.match(r.body.message, new RegExp(field), `${path}: the message names ${field}`);
    }
  }
  assert.deepEqual(liveIds(), before, 'no sandbox was created by a refused request');
  // Defaults the SDKs send (false, null, empty) are not refusals.
  const ok = await e2bApi('POST', '/sandboxes', { templateID: 'base', autoPause: false, autoResume: { enabled: false }, network: null, mcp: null, volumeMounts: [] });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  created.add(ok.body.sandboxID);
  assert.equal(typeof ok.body.envdAccessToken, 'string', 'the v1 reply still carries the envd token');
  await kill(ok.body.sandboxID);
});

test('GET /sandboxes/:id and the list carry diskSizeMB (the effective disk quota)', async () => {
  const sbx = await create();
  try {
    const detail = await e2bApi('GET', `/sandboxes/${sbx.sandboxId}`);
    assert.equal(detail.status, 200);
    assert.equal(detail.body.diskSizeMB, 2048, 'the gateway default (--disk-mib 2048)');
    const listed = await e2bApi('GET', `/v2/sandboxes?metadata=${encodeURIComponent(`none=${sbx.sandboxId}`)}`);
    assert.deepEqual(listed.body, []);
    const all = (await e2bApi('GET', '/v2/sandboxes')).body as { sandboxID: string; diskSizeMB: number }[];
    assert.equal(all.find((s) => s.sandboxID === sbx.sandboxId)?.diskSizeMB, 2048);
  } finally {
    await kill(sbx.sandboxId);
  }
  // A create that names its quota reports that quota.
  const small = await gw.api('POST', '/sandboxes', { templateID: 'base', limits: { diskMiB: 64 } });
  assert.equal(small.status, 201, JSON.stringify(small.body));
  created.add(small.body.sandboxID);
  assert.equal((await e2bApi('GET', `/sandboxes/${small.body.sandboxID}`)).body.diskSizeMB, 64);
  await kill(small.body.sandboxID);
});

test('list: newest first by default; startedAfter includes a sandbox started at exactly that time', async () => {
  const tag = `order${Date.now()}`;
  const a = await create({ metadata: { suite: tag } });
  const b = await create({ metadata: { suite: tag } });
  try {
    const aStarted = (await a.getInfo()).startedAt;
    const bStarted = (await b.getInfo()).startedAt;
    assert.ok(bStarted.getTime() >= aStarted.getTime());
    const items = await Sandbox.list({ ...opts, query: { metadata: { suite: tag } } }).nextItems();
    assert.deepEqual(items.map((s) => s.sandboxId), [b.sandboxId, a.sandboxId], 'newest first');
    const asc = await Sandbox.list({ ...opts, query: { metadata: { suite: tag } }, order: 'asc' } as Parameters<typeof Sandbox.list>[0]).nextItems();
    assert.deepEqual(asc.map((s) => s.sandboxId), [a.sandboxId, b.sandboxId], 'order=asc still works');
    // Paging newest-first with limit 1 visits both once.
    const pager = Sandbox.list({ ...opts, query: { metadata: { suite: tag } }, limit: 1 });
    const paged: string[] = [];
    while (pager.hasNext) for (const s of await pager.nextItems()) paged.push(s.sandboxId);
    assert.deepEqual(paged, [b.sandboxId, a.sandboxId]);
    // startedAfter = a's start time exactly: a is included (at or after).
    const since = await Sandbox.list({ ...opts, query: { metadata: { suite: tag }, startedAfter: aStarted } }).nextItems();
    assert.ok(since.some((s) => s.sandboxId === a.sandboxId), 'a started at startedAfter is listed');
    const later = await Sandbox.list({ ...opts, query: { metadata: { suite: tag }, startedAfter: new Date(bStarted.getTime() + 1) } }).nextItems();
    assert.deepEqual(later, [], 'nothing started after b');
  } finally {
    await kill(a.sandboxId);
    await kill(b.sandboxId);
  }
});

test('fork: the reply is an array of {sandbox}; count forks N; count out of range is 400; forks are real and independent', async () => {
  const src = await create();
  try {
    await src.files.write('/home/user/from-source.txt', 'forked');
    const [one, ...none] = await src.fork();
    assert.deepEqual(none, [], 'no count: one fork');
    assert.ok(one instanceof Sandbox, `a Sandbox, not ${String(one)}`);
    created.add(one.sandboxId);
    assert.notEqual(one.sandboxId, src.sandboxId);
    assert.equal(await one.files.read('/home/user/from-source.txt'), 'forked');
    await kill(one.sandboxId);

    const two = await Sandbox.fork(src.sandboxId, { ...opts, count: 2 });
    assert.equal(two.length, 2);
    for (const f of two) {
      assert.ok(f instanceof Sandbox, String(f));
      created.add(f.sandboxId);
    }
    const [f1, f2] = two as Sandbox[];
    assert.notEqual(f1!.sandboxId, f2!.sandboxId);
    await f1!.files.write('/home/user/only-f1.txt', '1');
    assert.equal(await f2!.files.exists('/home/user/only-f1.txt'), false, 'forks are independent');
    assert.equal((await f2!.commands.run('cat /home/user/from-source.txt')).stdout, 'forked');
    for (const f of two as Sandbox[]) await kill(f.sandboxId);

    const liveBefore = liveIds();
    for (const count of [0, -1, 1.5, 101]) {
      const r = await e2bApi('POST', `/sandboxes/${src.sandboxId}/fork`, { count });
      assert.equal(r.status, 400, `count ${count}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.message, /count/);
    }
    assert.equal((await e2bApi('POST', '/sandboxes/zzzzzzzzzz/fork', { count: 2 })).status, 404);
    assert.deepEqual(liveIds(), liveBefore, 'refused forks created nothing');
    // The source keeps its id and keeps running.
    assert.equal((await src.getInfo()).state, 'running');
    // coppice's own clients (Bearer) keep coppice's reply: one sandbox view.
    const own = await gw.api('POST', `/sandboxes/${src.sandboxId}/fork`, {});
    assert.equal(own.status, 201);
    assert.equal(typeof own.body.sandboxID, 'string');
    created.add(own.body.sandboxID);
    await kill(own.body.sandboxID);
  } finally {
    await kill(src.sandboxId);
  }
});

test('fork: a partial failure reports each fork (a sandbox or its error) and leaves nothing behind', async () => {
  const small = await startTestGateway(['--max-sandboxes', '2']);
  const o = { apiKey: small.key, apiUrl: small.url, sandboxUrl: small.url };
  const src = await Sandbox.create('base', o);
  try {
    const results = await Sandbox.fork(src.sandboxId, { ...o, count: 3 });
    assert.equal(results.length, 3, 'one entry per requested fork');
    const ok = results.filter((r): r is Sandbox => r instanceof Sandbox);
    const failed = results.filter((r) => !(r instanceof Sandbox));
    assert.equal(ok.length, 1, 'the ceiling (2 live) leaves room for one fork');
    assert.equal(failed.length, 2);
    for (const e of failed) assert.ok(e instanceof RateLimitError, `a 429 per failed fork (got ${String(e)})`);
    assert.equal((await ok[0]!.commands.run('echo alive')).stdout, 'alive\n');
    const live = new Set(small.app.gateway.list().map((v) => v.sandboxID));
    assert.deepEqual(live, new Set([src.sandboxId, ok[0]!.sandboxId]), 'no half-made fork is left');
    await Sandbox.kill(ok[0]!.sandboxId, o);
  } finally {
    await Sandbox.kill(src.sandboxId, o).catch(() => false);
    await small.close();
  }
});

test('pause with memory:false (keepMemory: false) is refused naming the field; the sandbox keeps running', async () => {
  const sbx = await create();
  try {
    await assert.rejects(sbx.pause({ keepMemory: false }), /memory/);
    const r = await e2bApi('POST', `/sandboxes/${sbx.sandboxId}/pause`, { memory: false });
    assert.equal(r.status, 400);
    assert.match(r.body.message, /memory/);
    assert.equal((await sbx.getInfo()).state, 'running');
    assert.equal(await sbx.pause({ keepMemory: true }), true, 'memory: true is what coppice does');
    assert.equal((await sbx.getInfo()).state, 'paused');
    await Sandbox.connect(sbx.sandboxId, opts);
  } finally {
    await kill(sbx.sandboxId);
  }
});

test('fork: a client that goes away before the reply leaves no fork behind', async () => {
  const src = await create();
  try {
    const ac = new AbortController();
    const req = fetch(`${gw.url}/sandboxes/${src.sandboxId}/fork`, {
      method: 'POST',
      headers: { 'x-api-key': gw.key, 'content-type': 'application/json' },
      body: JSON.stringify({ count: 50 }),
      signal: ac.signal,
    }).catch((e: unknown) => e);
    const others = () => [...liveIds()].filter((id) => id !== src.sandboxId && !created.has(id));
    for (let i = 0; i < 600 && others().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(others().length > 0, 'a fork was being made');
    ac.abort();
    assert.ok((await req) instanceof Error, 'the client gave up');
    for (let i = 0; i < 600 && others().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(others(), [], 'the forks made for the client that left were destroyed');
    assert.equal((await src.getInfo()).state, 'running', 'the source is untouched');
  } finally {
    await kill(src.sandboxId);
  }
});
