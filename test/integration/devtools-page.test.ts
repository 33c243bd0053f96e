// Devtools: the inspection WebSocket, the tree JSON and the page, against a real gateway
// (in-process, real runc sandboxes), and the page itself in a real headless Chromium
// (playwright-core driving Debian's /usr/bin/chromium; it never downloads a browser).
// Needs root (runc). Leaves a screenshot in test-artifacts/devtools.png.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { Outbox, type Socket } from '../../src/edge/devtools/hub.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const root = process.getuid?.() === 0;
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const SECRET_ENV = 'env-value-that-must-not-leak-7f3a';
const SECRET_VAR = 'sandbox-var-that-must-not-leak-91c2';
const SECRET_STDIN = 'stdin-bytes-that-must-not-leak-5be0';

interface Msg {
  type: string;
  seq?: number;
  sandbox?: string | null;
  [k: string]: unknown;
}

/** A devtools WebSocket client that records everything it is sent. */
function watch(url: string, protocols: string[], headers: Record<string, string> = {}) {
  const ws = new WebSocket(url.replace(/^http/, 'ws') + '/devtools/ws', protocols, { headers });
  const msgs: Msg[] = [];
  const waiters: { pred: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = [];
  ws.on('message', (d) => {
    const m = JSON.parse(String(d)) as Msg;
    msgs.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const refused = new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
  const opened = new Promise<void>((resolve, reject) => {
    ws.on('open', () => resolve());
    ws.on('error', reject);
  });
  opened.catch(() => undefined);
  return {
    ws,
    msgs,
    refused,
    opened,
    next(pred: (m: Msg) => boolean, ms = 10_000): Promise<Msg> {
      const seen = msgs.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('timed out waiting for a devtools message')), ms);
        waiters.push({ pred, resolve: (m) => (clearTimeout(t), resolve(m)) });
      });
    },
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return;
      const closed = new Promise((r) => ws.once('close', r));
      ws.close();
      await closed;
    },
  };
}

async function until(pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('devtools outbox (bounded per-client buffer)', () => {
  class FakeSocket implements Socket {
    bufferedAmount = 0;
    readyState = 1;
    sent: string[] = [];
    callbacks: (() => void)[] = [];
    send(data: string, cb?: (err?: Error) => void) {
      this.sent.push(data);
      this.bufferedAmount += data.length;
      this.callbacks.push(() => {
        this.bufferedAmount -= data.length;
        cb?.();
      });
    }
    /** The network catches up: every pending write completes. */
    drain() {
      for (const cb of this.callbacks.splice(0)) cb();
    }
  }
  const limits = { highWaterMark: 100, maxQueueBytes: 1000, maxQueueMessages: 5 };

  it('sends at once while the socket keeps up', () => {
    const s = new FakeSocket();
    const o = new Outbox(s, limits, () => '{"type":"tree"}');
    for (let i = 1; i <= 20; i++) {
      o.push(`{"seq":${i}}`, i);
      s.drain();
    }
    assert.equal(s.sent.length, 20);
    assert.equal(o.droppedTotal, 0);
  });

  it('queues up to its bound, then drops, then reports the gap and resends the tree', async () => {
    const s = new FakeSocket();
    const o = new Outbox(s, limits, () => '{"type":"tree","seq":99}');
    const msg = (i: number) => `{"seq":${i},"pad":"${'x'.repeat(40)}"}`;
    // 2 go out before the socket is above its high-water mark (58 bytes each), 5 queue, the rest drop.
    for (let i = 1; i <= 20; i++) o.push(msg(i), i);
    assert.equal(s.sent.length, 2);
    assert.equal(o.queued, 5);
    assert.equal(o.droppedTotal, 13);
    // Still lagging: later messages are dropped too, never queued past the bound.
    o.push(msg(21), 21);
    assert.equal(o.droppedTotal, 14);
    // The client catches up: queued messages flow, then {"dropped"} and a fresh tree.
    for (let i = 0; i < 10; i++) {
      s.drain();
      await sleep(1);
    }
    const types = s.sent.map((t) => JSON.parse(t) as { type?: string; seq?: number; count?: number; fromSeq?: number; toSeq?: number });
    assert.deepEqual(types.slice(0, 7).map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7]);
    const dropped = types.find((m) => m.type === 'dropped')!;
    assert.deepEqual([dropped.count, dropped.fromSeq, dropped.toSeq], [14, 8, 21]);
    assert.equal(types[types.indexOf(dropped) + 1]!.type, 'tree');
    // And it is back to normal.
    o.push(msg(22), 22);
    s.drain();
    assert.equal(JSON.parse(s.sent.at(-1)!).seq, 22);
  });
});

describe('devtools endpoints (real gateway)', { skip: root ? false : 'needs root (runc sandboxes)', timeout: 180_000 }, () => {
  let gw: TestGateway;
  const created = new Set<string>();

  before(async () => {
    gw = await startTestGateway(['--jail-subnet', '10.78.44.0/24']);
  });
  after(async () => {
    for (const id of created) await gw?.api('DELETE', `/sandboxes/${id}`);
    await gw?.close();
  });

  it('the page shell is served without the key and holds no data; its data endpoints refuse clients without the key', async () => {
    const page = await fetch(`${gw.url}/devtools`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    const html = await page.text();
    assert.ok(!html.includes(gw.key));
    assert.doesNotMatch(html, /sandbox:|10\.78\./);
    assert.equal((await fetch(`${gw.url}/devtools/app.js`)).status, 200);
    assert.equal((await fetch(`${gw.url}/ui`, { redirect: 'manual' })).headers.get('location'), '/devtools');

    for (const headers of [{}, { authorization: 'Bearer wrong' }, { 'x-api-key': 'wrong' }] as Record<string, string>[]) {
      const r = await fetch(`${gw.url}/devtools/tree`, { headers });
      assert.equal(r.status, 401);
      assert.deepEqual(((await r.json()) as { error: string }).error, 'unauthorized');
    }
    // A plain GET of the WebSocket path: the key first, then "use a WebSocket".
    assert.equal((await fetch(`${gw.url}/devtools/ws`)).status, 401);
    assert.equal((await fetch(`${gw.url}/devtools/ws`, { headers: { authorization: `Bearer ${gw.key}` } })).status, 400);

    // The inspection WebSocket: no key, a wrong key (header or subprotocol) -> 401 before the upgrade.
    for (const [protocols, headers] of [
      [['coppice.devtools.v1'], {}],
      [['coppice.devtools.v1', 'coppice.key.wrong'], {}],
      [['coppice.devtools.v1'], { authorization: 'Bearer wrong' }],
    ] as [string[], Record<string, string>][]) {
      const c = watch(gw.url, protocols, headers);
      assert.equal(await c.refused, 401);
    }
    // The right key without the devtools subprotocol: 400.
    assert.equal(await watch(gw.url, [`coppice.key.${gw.key}`]).refused, 400);
    assert.equal(gw.app.edge.devtools.hub.watching, false, 'refused clients never subscribed');
  });

  it('the tree JSON is the supervisor tree with states and sanitized contexts', async () => {
    const sb = await gw.api('POST', '/sandboxes', { templateID: 'busybox', envVars: { SECRET_VAR: SECRET_VAR }, metadata: { purpose: 'tree-test' } });
    assert.equal(sb.status, 201);
    const id = sb.body.sandboxID as string;
    created.add(id);
    const r = await gw.api('GET', '/devtools/tree');
    assert.equal(r.status, 200);
    const tree = r.body as { lifecycle: string; counts: { sandboxes: number }; root: Node };
    type Node = { kind: string; systemId: string | null; state: string | null; context?: Record<string, unknown>; children: Node[] };
    assert.equal(tree.lifecycle, 'serving');
    assert.equal(tree.root.kind, 'gateway');
    assert.equal(tree.root.state, 'serving');
    const kinds = new Set(tree.root.children.map((c) => c.kind));
    assert.ok(kinds.has('registry') && kinds.has('shard'));
    const sandbox = tree.root.children.flatMap((c) => c.children).find((n) => n.systemId === `sandbox:${id}`)!;
    assert.equal(sandbox.kind, 'sandbox');
    assert.equal(sandbox.state, 'ready');
    assert.equal(sandbox.context!.template, 'busybox');
    assert.deepEqual(sandbox.context!.envVars, ['SECRET_VAR'], 'env names only');
    assert.deepEqual(sandbox.context!.metadata, { purpose: 'tree-test' });
    assert.ok(!JSON.stringify(r.body).includes(SECRET_VAR));
    assert.ok(!('handle' in sandbox.context!));

    const filtered = (await gw.api('GET', `/devtools/tree?sandbox=${id}`)).body as { counts: { sandboxes: number }; root: Node };
    assert.equal(filtered.counts.sandboxes, 1);
    assert.equal(filtered.root.children.filter((c) => c.kind === 'shard').length, 1);
    assert.equal((await gw.api('GET', '/devtools/tree?sandbox=../etc')).status, 400);
  });

  it('streams actors, events and snapshots only while watched, sanitized, filtered on request', async () => {
    const hub = gw.app.edge.devtools.hub;
    assert.equal(hub.watching, false, 'nobody watches: not subscribed');
    const before = hub.subscriptions;
    const a = watch(gw.url, ['coppice.devtools.v1', `coppice.key.${gw.key}`]);
    const b = watch(gw.url, ['coppice.devtools.v1'], { authorization: `Bearer ${gw.key}` });
    await Promise.all([a.opened, b.opened]);
    const hello = await a.next((m) => m.type === 'hello');
    assert.equal((hello.tree as { root: { kind: string } }).root.kind, 'gateway');
    assert.equal(hub.watching, true);
    assert.equal(hub.subscriptions, before + 1, 'one subscription shared by both clients');

    const sb = await gw.api('POST', '/sandboxes', { templateID: 'busybox', envVars: { SECRET_VAR: SECRET_VAR } });
    const id = sb.body.sandboxID as string;
    created.add(id);
    const ex = await gw.api('POST', `/sandboxes/${id}/exec`, { cmd: 'cat >/dev/null; echo ok', stdin: SECRET_STDIN, env: { SECRET_ENV: SECRET_ENV } });
    assert.equal(ex.body.stdout, 'ok\n');
    await a.next((m) => m.type === 'snapshot' && m.kind === 'process' && m.status === 'done');

    const actor = await a.next((m) => m.type === 'actor' && (m.actor as { systemId: string }).systemId === `sandbox:${id}`);
    assert.equal(actor.sandbox, id);
    const exec = a.msgs.find((m) => m.type === 'event' && (m.event as { type: string }).type === 'EXEC')!;
    // The command's env is the sandbox's envVars plus its own: names only.
    assert.deepEqual((exec.event as { request: { env: string[] } }).request.env.sort(), ['SECRET_ENV', 'SECRET_VAR']);
    assert.equal((exec.event as { request: { stdinBytes: number } }).request.stdinBytes, SECRET_STDIN.length);
    assert.ok(a.msgs.some((m) => m.type === 'snapshot' && m.sandbox === id && m.state === 'ready'));
    assert.ok(a.msgs.some((m) => m.type === 'event' && (m.event as { type: string }).type === 'SPAWN'));
    const everything = JSON.stringify(a.msgs) + JSON.stringify(b.msgs);
    for (const secret of [SECRET_ENV, SECRET_VAR, SECRET_STDIN, gw.key]) assert.ok(!everything.includes(secret), `leaked ${secret}`);
    assert.ok(!/"handle"|"channel"/.test(everything), 'no handles or channels');

    // Filter: b wants only this sandbox; a bad message is answered and the connection stays.
    b.ws.send(JSON.stringify({ type: 'filter', sandbox: 'not an id' }));
    assert.equal((await b.next((m) => m.type === 'error')).error, 'bad_request');
    b.ws.send(JSON.stringify({ type: 'filter', sandbox: id }));
    const tree = await b.next((m) => m.type === 'tree');
    assert.equal((tree.tree as { filter: { sandbox: string } }).filter.sandbox, id);
    const mark = b.msgs.length;
    const other = await gw.api('POST', '/sandboxes', { templateID: 'busybox' });
    created.add(other.body.sandboxID);
    await gw.api('POST', `/sandboxes/${id}/exec`, { cmd: 'true' });
    await b.next((m) => m.type === 'snapshot' && m.kind === 'process' && m.status === 'done' && m.sandbox === id);
    const streamed = b.msgs.slice(mark).filter((m) => m.seq !== undefined && m.type !== 'tree');
    assert.ok(streamed.length > 0);
    assert.ok(streamed.every((m) => m.sandbox === id), 'only the filtered sandbox');
    assert.ok(a.msgs.some((m) => m.sandbox === other.body.sandboxID), 'the unfiltered client saw the other one');

    await a.close();
    assert.equal(hub.watching, true, 'still one client');
    await b.close();
    await until(() => !hub.watching, 2000, 'the hub to unsubscribe');
    assert.equal(hub.clientCount, 0);
  });
});

describe('devtools page in headless Chromium', { skip: !root ? 'needs root (runc sandboxes)' : !existsSync(CHROMIUM) ? `no ${CHROMIUM}` : false, timeout: 240_000 }, () => {
  let gw: TestGateway;
  let profile: string;
  let context: import('playwright-core').BrowserContext | undefined;
  const created = new Set<string>();

  before(async () => {
    gw = await startTestGateway(['--jail-subnet', '10.78.43.0/24']);
    profile = mkdtempSync(join(tmpdir(), 'coppice-chromium-'));
    mkdirSync(ARTIFACTS, { recursive: true });
  });
  after(async () => {
    await context?.close().catch(() => undefined);
    for (const id of created) await gw?.api('DELETE', `/sandboxes/${id}`);
    await gw?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it('logs in, follows the live tree, runs a command and streams its output, pauses, resumes, creates, deletes', async () => {
    const { chromium } = await import('playwright-core');
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1500, height: 1100 },
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('response', (r) => r.status() >= 400 && !(r.status() === 401 && r.url().endsWith('/devtools/tree?compact=1')) && problems.push(`${r.status()} ${r.url()}`));
    page.on('console', (m) => m.type() === 'error' && !/status of 401/.test(m.text()) && problems.push(`console: ${m.text()}`));

    await page.goto(`${gw.url}/devtools`);
    await page.locator('#login').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#app').isVisible(), false, 'nothing shown before login');

    // A wrong key is refused; the right one opens the app.
    await page.fill('#key', 'not-the-key');
    await page.click('#login-button');
    await page.locator('#login-error', { hasText: 'Invalid API key' }).waitFor();
    await page.fill('#key', gw.key);
    await page.click('#login-button');
    await page.locator('#app').waitFor({ state: 'visible' });
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await page.locator('#tree li[data-actor="gateway"][data-state="serving"]').waitFor();
    await page.locator('#templates tr[data-template="busybox"]', { hasText: 'jail' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('coppice.key')), gw.key);

    // A sandbox created over REST appears in the live tree (and the portal) by itself.
    const sb = await gw.api('POST', '/sandboxes', { templateID: 'busybox', metadata: { from: 'rest' } });
    assert.equal(sb.status, 201);
    const id = sb.body.sandboxID as string;
    created.add(id);
    await page.locator(`#tree li[data-actor="sandbox:${id}"][data-state="ready"]`).waitFor({ timeout: 10_000 });
    await page.locator(`#log li[data-sandbox="${id}"]`).first().waitFor();
    const row = page.locator(`#sandboxes tr[data-sandbox="${id}"]`);
    await row.waitFor({ timeout: 10_000 });

    // Run a command from the page: its output streams in (line 1 long before the last line).
    await row.locator('button[data-action="run"]').click();
    await page.fill('#cmd', 'for i in 1 2 3 4 5; do echo line$i; sleep 0.4; done; echo bye >&2');
    await page.click('#run');
    const out = page.locator('#exec-output');
    await out.getByText('line1').waitFor({ timeout: 10_000 });
    const early = await out.textContent();
    assert.ok(!early!.includes('line5'), `output arrived all at once: ${JSON.stringify(early)}`);
    // While it runs, the tree shows the command's process actor under the sandbox.
    await page.locator(`#tree li[data-actor="sandbox:${id}"] li[data-kind="process"]`).first().waitFor();
    await page.locator('#exec-status', { hasText: 'exited 0' }).waitFor({ timeout: 15_000 });
    const full = (await out.textContent())!;
    assert.equal(full, 'line1\nline2\nline3\nline4\nline5\nbye\n');
    assert.equal(await out.locator('span.stderr').textContent(), 'bye\n');

    // Pause and resume from the page: the tree, the portal and REST agree.
    await row.locator('button[data-action="pause"]').click();
    await page.locator(`#tree li[data-actor="sandbox:${id}"][data-state="paused"]`).waitFor();
    await page.locator(`#sandboxes tr[data-sandbox="${id}"][data-state="paused"]`).waitFor();
    assert.equal((await gw.api('GET', `/sandboxes/${id}`)).body.state, 'paused');
    await page.locator(`#sandboxes tr[data-sandbox="${id}"] button[data-action="resume"]`).click();
    await page.locator(`#tree li[data-actor="sandbox:${id}"][data-state="ready"]`).waitFor();
    await page.locator(`#sandboxes tr[data-sandbox="${id}"][data-state="running"]`).waitFor();
    assert.equal((await gw.api('GET', `/sandboxes/${id}`)).body.state, 'running');

    // Create one from a template on the page, filter the tree to it, then delete it from the page.
    await page.selectOption('#create-template', 'busybox');
    await page.click('#create');
    const status = page.locator('#create-status', { hasText: 'created' });
    await status.waitFor({ timeout: 30_000 });
    const id2 = /created ([a-z0-9]{10})/.exec((await status.textContent())!)![1]!;
    created.add(id2);
    await page.locator(`#tree li[data-actor="sandbox:${id2}"][data-state="ready"]`).waitFor();
    await page.locator(`#filter option[value="${id2}"]`).waitFor({ state: 'attached' });
    await page.selectOption('#filter', id2);
    await page.locator(`#tree li[data-actor="sandbox:${id}"]`).waitFor({ state: 'detached' });
    assert.equal(await page.locator('#tree li[data-kind="sandbox"]').count(), 1);
    await page.selectOption('#filter', '');
    await page.locator(`#tree li[data-actor="sandbox:${id}"]`).waitFor();

    // The selected actor's sanitized context.
    await page.locator(`#tree li[data-actor="sandbox:${id}"] > .node`).click();
    await page.locator('#details', { hasText: '"template": "busybox"' }).waitFor();
    assert.match((await page.locator('#details').textContent())!, /"from": "rest"/);
    await page.screenshot({ path: join(ARTIFACTS, 'devtools.png'), fullPage: true });

    // Delete asks first (an in-page dialog); portal-layout.test.ts covers cancelling.
    await page.locator(`#sandboxes tr[data-sandbox="${id2}"] button[data-action="delete"]`).click();
    await page.locator('#confirm-title', { hasText: `Delete sandbox ${id2}` }).waitFor();
    await page.click('#confirm-ok');
    await page.locator(`#sandboxes tr[data-sandbox="${id2}"]`).waitFor({ state: 'detached', timeout: 30_000 });
    assert.equal((await gw.api('GET', `/sandboxes/${id2}`)).status, 404);
    created.delete(id2);
    await page.locator(`#tree li[data-actor="sandbox:${id2}"]`).waitFor({ state: 'detached', timeout: 10_000 });

    // Signing out forgets the key and closes the stream.
    await page.click('#logout');
    await page.locator('#login').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('coppice.key')), null);
    await until(() => !gw.app.edge.devtools.hub.watching, 5000, 'the page to stop watching');

    assert.deepEqual(problems, []);
    assert.ok(existsSync(join(ARTIFACTS, 'devtools.png')));
  });
});
