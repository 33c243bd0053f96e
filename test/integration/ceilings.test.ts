// Operator ceilings on one create (--max-memory-mib, --max-cpus, --max-pids, --max-timeout): a
// create asking for more is 400 naming the field, before anything is made; at the ceiling it works.
// Control bodies (create, connect, fork, timeout) are bounded far below --body-limit.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

describe('limit ceilings', () => {
  let gw: TestGateway;
  const created: string[] = [];
  before(async () => {
    gw = await startTestGateway(['--max-memory-mib', '256', '--max-cpus', '2', '--max-pids', '128', '--max-timeout', '600']);
  });
  after(async () => {
    for (const id of created) await gw.api('DELETE', `/sandboxes/${id}`);
    await gw.close();
  });

  for (const [field, body] of [
    ['limits.memoryMiB', { limits: { memoryMiB: 257 } }],
    ['limits.cpus', { limits: { cpus: 3 } }],
    ['limits.pids', { limits: { pids: 129 } }],
    ['timeout', { timeout: 601 }],
  ] as const) {
    test(`above the ceiling: 400 naming ${field}, nothing created`, async () => {
      const r = await gw.api('POST', '/sandboxes', { templateID: 'busybox', ...body });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.field, field);
      assert.match(r.body.message, /ceiling/);
      const list = await gw.api('GET', '/sandboxes');
      assert.equal(list.body.length, created.length, 'no sandbox was made');
    });
  }

  test('the E2B create form is held to the same ceilings', async () => {
    const r = await gw.api('POST', '/v2/sandboxes', { templateID: 'busybox', timeout: 601 });
    assert.equal(r.status, 400, JSON.stringify(r.body));
  });

  test('a 19 MB create body (1.5 M metadata keys) is 413 before it is parsed; /health answers meanwhile', async () => {
    const keys: string[] = [];
    for (let i = 0; i < 1_500_000; i++) keys.push(`"k${i}":"v"`);
    const body = `{"templateID":"busybox","metadata":{${keys.join(',')}}}`;
    assert.ok(body.length > 19_000_000);
    const [create, health] = await Promise.all([
      gw.api('POST', '/sandboxes', body),
      new Promise((r) => setTimeout(r, 5)).then(() => fetch(`${gw.url}/health`)),
    ]);
    assert.equal(create.status, 413, JSON.stringify(create.body));
    assert.equal(health.status, 200);
    const e2b = await gw.api('POST', '/v2/sandboxes', body);
    assert.equal(e2b.status, 413);
  });

  test('the control-body limit is per route: an exec body of 2 MiB (stdin) is still accepted', async () => {
    const r = await gw.api('POST', '/sandboxes', { templateID: 'busybox' });
    assert.equal(r.status, 201);
    created.push(r.body.sandboxID);
    const x = await gw.api('POST', `/sandboxes/${r.body.sandboxID}/exec`, { cmd: 'wc -c', stdin: 'y'.repeat(2 * 1024 * 1024) });
    assert.equal(x.status, 200, JSON.stringify(x.body).slice(0, 200));
    assert.equal(x.body.stdout.trim(), String(2 * 1024 * 1024));
  });

  test('at the ceilings a create succeeds with those limits', async () => {
    const r = await gw.api('POST', '/sandboxes', { templateID: 'busybox', timeout: 600, limits: { memoryMiB: 256, cpus: 2, pids: 128 } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    created.push(r.body.sandboxID);
    assert.deepEqual({ ...r.body.limits, diskMiB: undefined }, { memoryMiB: 256, cpus: 2, pids: 128, diskMiB: undefined });
  });
});

describe('host memory budget', () => {
  let gw: TestGateway;
  const created: string[] = [];
  before(async () => {
    gw = await startTestGateway(['--memory-budget-mib', '640']);
  });
  after(async () => {
    for (const id of created) await gw.api('DELETE', `/sandboxes/${id}`);
    await gw.close();
  });

  test('creates beyond the sum of memory limits are 429; freeing memory admits them again', async () => {
    const a = await gw.api('POST', '/sandboxes', { templateID: 'busybox', limits: { memoryMiB: 512 } });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    created.push(a.body.sandboxID);
    const b = await gw.api('POST', '/sandboxes', { templateID: 'busybox', limits: { memoryMiB: 256 } });
    assert.equal(b.status, 429, JSON.stringify(b.body));
    assert.match(b.body.message, /memory budget: 512 of 640 MiB/);
    // Still room for a small one.
    const c = await gw.api('POST', '/sandboxes', { templateID: 'busybox', limits: { memoryMiB: 128 } });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    created.push(c.body.sandboxID);
    assert.equal((await gw.api('DELETE', `/sandboxes/${a.body.sandboxID}`)).status, 204);
    const d = await gw.api('POST', '/sandboxes', { templateID: 'busybox', limits: { memoryMiB: 256 } });
    assert.equal(d.status, 201, JSON.stringify(d.body));
    created.push(d.body.sandboxID);
  });
});
