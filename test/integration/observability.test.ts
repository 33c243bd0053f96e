// What an operator sees, on a real gateway (real runc sandboxes): request latency and create
// outcome metrics, streaming exec sessions and bytes, clean default metric names, a metrics-only
// key for scrapers, one log line per failed request with its code and message, strict input.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { startApp, type App } from '../../src/app.ts';
import { parseServeArgs } from '../../src/config.ts';
import { TEMPLATES_ROOT } from '../helpers/gateway.ts';
import { ExecWsClient } from '../helpers/ws-exec-client.ts';
import { startChildGateway, waitHealthy } from '../helpers/child-gateway.ts';

const KEY = `test-${Math.random().toString(36).slice(2)}`;
const METRICS_KEY = `scrape-${Math.random().toString(36).slice(2)}`;

describe('observability and strict input (real gateway)', () => {
  let app: App;
  let dir: string;
  let stateDir: string;
  const lines: Record<string, unknown>[] = [];
  const call = async (method: string, path: string, opts: { body?: unknown; auth?: string } = {}) => {
    const res = await fetch(app.url + path, {
      method,
      headers: { authorization: opts.auth ?? `Bearer ${KEY}`, ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    const text = await res.text();
    return { status: res.status, text, json: () => JSON.parse(text) };
  };
  const created: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coppice-obs-'));
    // Its own mkdtemp: the gateway opens the state dir to the sandboxes' uid ranges, not its parents.
    stateDir = mkdtempSync(join(tmpdir(), 'coppice-obs-state-'));
    writeFileSync(join(dir, 'metrics-key'), METRICS_KEY + '\n');
    const config = parseServeArgs([
      '--listen', '127.0.0.1:0', '--state-dir', stateDir, '--templates-root', TEMPLATES_ROOT,
      '--metrics-key-file', join(dir, 'metrics-key'),
    ]);
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
        cb();
      },
    });
    app = await startApp(config, { logger: pino({ level: 'info' }, sink), apiKey: KEY });
    for (let i = 0; i < 600 && app.gateway.lifecycle === 'starting'; i++) await new Promise((r) => setTimeout(r, 10));
  });

  after(async () => {
    for (const id of created) await call('DELETE', `/sandboxes/${id}`);
    await app.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  });

  test('a create with an unknown field is 400 naming it (nothing is made)', async () => {
    const r = await call('POST', '/sandboxes', { body: { templateID: 'base', timout: 30 } });
    assert.equal(r.status, 400);
    assert.equal(r.json().field, 'timout');
    assert.deepEqual(app.gateway.list(), []);
  });

  test('the bearer scheme is case-insensitive', async () => {
    assert.equal((await call('GET', '/sandboxes', { auth: `bearer ${KEY}` })).status, 200);
    assert.equal((await call('GET', '/sandboxes', { auth: `BEARER ${KEY}` })).status, 200);
    assert.equal((await call('GET', '/sandboxes', { auth: `bearer nope` })).status, 401);
  });

  test('the metrics key reads /metrics and nothing else; the API key reads it too', async () => {
    assert.equal((await call('GET', '/metrics', { auth: `Bearer ${METRICS_KEY}` })).status, 200);
    assert.equal((await call('GET', '/metrics')).status, 200);
    assert.equal((await call('GET', '/metrics', { auth: 'Bearer wrong' })).status, 401);
    assert.equal((await call('GET', '/sandboxes', { auth: `Bearer ${METRICS_KEY}` })).status, 401);
    assert.equal((await call('POST', '/sandboxes', { auth: `Bearer ${METRICS_KEY}`, body: { templateID: 'base' } })).status, 401);
  });

  test('a failed request is logged once with its code and message', async () => {
    await call('GET', '/sandboxes/nosuchsbx1');
    const line = lines.find((l) => l.route === '/sandboxes/:id' && l.status === 404);
    assert.ok(line, 'a request line for the 404');
    assert.equal(line.code, 'not_found');
    assert.match(String(line.error), /sandbox "nosuchsbx1" not found/);
  });

  test('metrics: request latency by route, creates by outcome, WS exec sessions and bytes, clean names', async () => {
    const r = await call('POST', '/sandboxes', { body: { templateID: 'base' } });
    assert.equal(r.status, 201, r.text);
    const id = r.json().sandboxID as string;
    created.push(id);
    const ws = new ExecWsClient(app.url, id, KEY);
    await ws.opened;
    await ws.start({ type: 'start', argv: ['/bin/sh', '-c', 'printf 0123456789'] });
    await ws.exited;
    await ws.closed;
    // An unknown user is the request's fault: 400 naming the field, said from inside the sandbox.
    const bad = await call('POST', `/sandboxes/${id}/exec`, { body: { argv: ['true'], user: 'nosuchuser' } });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json().field, 'user');
    assert.doesNotMatch(bad.text, /\/var\/lib|templates|-template/);
    const m = (await call('GET', '/metrics')).text;
    assert.match(m, /coppice_http_request_duration_seconds_bucket\{[^}]*route="\/sandboxes"[^}]*status="201"/);
    assert.match(m, /coppice_sandbox_creates_total\{backend="jail",outcome="(ok|pool)"\} 1/);
    assert.match(m, /coppice_ws_exec_sessions_total\{mode="start"\} 1/);
    assert.match(m, /coppice_ws_exec_bytes_total\{direction="out"\} 10/);
    assert.match(m, /coppice_ws_exec_sessions_active 0/);
    assert.match(m, /^coppice_process_cpu_user_seconds_total /m);
    assert.doesNotMatch(m, /coppice_process_process_/);
  });
});

describe('serve start-up line', () => {
  test('a key the operator supplied is never printed; the line says where it came from', async () => {
    const gw = await startChildGateway();
    try {
      await waitHealthy(gw.url);
      assert.ok(!gw.stderr().includes(gw.key), 'the supplied key is not echoed');
      assert.match(gw.stderr(), /coppice API key from COPPICE_API_KEY/);
    } finally {
      gw.proc.kill('SIGINT');
      await gw.exit;
      rmSync(gw.stateDir, { recursive: true, force: true });
    }
  });
});
