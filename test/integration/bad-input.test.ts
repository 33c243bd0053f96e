// Bad input gets its documented status and a message naming what is wrong, and the gateway
// keeps serving afterwards.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

describe('bad input', () => {
  let gw: TestGateway;
  let id: string;
  before(async () => {
    gw = await startTestGateway();
    const r = await gw.api('POST', '/sandboxes', { templateID: 'busybox' });
    id = r.body.sandboxID;
  });
  after(async () => {
    await gw.api('DELETE', `/sandboxes/${id}`);
    await gw.close();
  });

  const expectError = (r: { status: number; body: any }, status: number, pattern: RegExp, field?: string) => {
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body.code, status, 'body.code is the HTTP status');
    assert.match(r.body.message, pattern);
    if (field) assert.equal(r.body.field, field);
  };

  test('malformed JSON is 400 naming the body', async () => {
    expectError(await gw.api('POST', '/sandboxes', '{"templateID": '), 400, /malformed JSON/, 'body');
  });

  test('wrong types are 400 naming the field', async () => {
    expectError(await gw.api('POST', '/sandboxes', { templateID: 42 }), 400, /templateID/, 'templateID');
    expectError(await gw.api('POST', '/sandboxes', { templateID: 'busybox', timeout: 'soon' }), 400, /timeout/, 'timeout');
    expectError(await gw.api('POST', '/sandboxes', { templateID: 'busybox', envVars: { 'BAD KEY': 'x' } }), 400, /envVars/);
    expectError(await gw.api('POST', '/sandboxes', { templateID: 'busybox', limits: { memoryMiB: -1 } }), 400, /limits\.memoryMiB/, 'limits.memoryMiB');
    expectError(await gw.api('POST', '/sandboxes', {}), 400, /templateID: is required/, 'templateID');
    expectError(await gw.api('POST', `/sandboxes/${id}/exec`, { cmd: 'true', argv: ['true'] }), 400, /exactly one of cmd/, 'cmd');
    expectError(await gw.api('POST', `/sandboxes/${id}/exec`, { argv: 'true' }), 400, /argv/, 'argv');
    expectError(await gw.api('POST', `/sandboxes/${id}/exec`, { cmd: 'true', cwd: 'tmp' }), 400, /absolute/, 'cwd');
    expectError(await gw.api('POST', `/sandboxes/${id}/timeout`, { timeout: -5 }), 400, /timeout/, 'timeout');
  });

  test('unknown template is 404; a templateID with ../ is 400', async () => {
    expectError(await gw.api('POST', '/sandboxes', { templateID: 'no-such-template' }), 404, /template "no-such-template" not found/);
    expectError(await gw.api('POST', '/sandboxes', { templateID: '../busybox' }), 400, /templateID/, 'templateID');
    expectError(await gw.api('POST', '/sandboxes', { templateID: 'busybox/../../etc' }), 400, /templateID/, 'templateID');
  });

  test('unknown sandbox is 404 on every sandbox route', async () => {
    for (const [method, path] of [
      ['GET', '/sandboxes/zzzzzzzzzz'],
      ['DELETE', '/sandboxes/zzzzzzzzzz'],
      ['POST', '/sandboxes/zzzzzzzzzz/exec'],
      ['POST', '/sandboxes/zzzzzzzzzz/pause'],
      ['POST', '/sandboxes/zzzzzzzzzz/resume'],
      ['POST', '/sandboxes/zzzzzzzzzz/connect'],
      ['POST', '/sandboxes/../../etc/passwd'],
    ] as const) {
      const r = await gw.api(method, path, method === 'POST' ? { cmd: 'true', timeout: 5 } : undefined);
      assert.equal(r.status, 404, `${method} ${path}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 404);
    }
  });

  test('pause twice and exec while paused are 409 naming the state', async () => {
    assert.equal((await gw.api('POST', `/sandboxes/${id}/pause`)).status, 204);
    expectError(await gw.api('POST', `/sandboxes/${id}/pause`), 409, /cannot pause a sandbox that is paused/);
    expectError(await gw.api('POST', `/sandboxes/${id}/exec`, { cmd: 'true' }), 409, /cannot exec a sandbox that is paused/);
    assert.equal((await gw.api('POST', `/sandboxes/${id}/resume`)).status, 204);
    expectError(await gw.api('POST', `/sandboxes/${id}/resume`), 409, /cannot resume a sandbox that is ready/);
  });

  test('a missing or wrong API key is 401 on every route but /health; X-API-KEY works too', async () => {
    for (const headers of [{ authorization: '' }, { authorization: 'Bearer wrong' }, { authorization: `Basic ${gw.key}` }]) {
      const r = await gw.api('GET', '/sandboxes', undefined, headers);
      expectError(r, 401, /API key/);
      expectError(await gw.api('POST', '/sandboxes', { templateID: 'busybox' }, headers), 401, /API key/);
      expectError(await gw.api('GET', '/metrics', undefined, headers), 401, /API key/);
    }
    const viaHeader = await fetch(`${gw.url}/sandboxes/${id}`, { headers: { 'x-api-key': gw.key } });
    assert.equal(viaHeader.status, 200);
    const health = await fetch(`${gw.url}/health`);
    assert.equal(health.status, 200);
  });

  test('unknown routes are 404, wrong methods 405, oversize bodies 413', async () => {
    expectError(await gw.api('GET', '/nope'), 404, /no route/);
    expectError(await gw.api('PUT', '/sandboxes'), 405, /not allowed/);
    const big = JSON.stringify({ templateID: 'busybox', metadata: { x: 'y'.repeat(40 * 1024 * 1024) } });
    const r = await gw.api('POST', '/sandboxes', big);
    assert.equal(r.status, 413);
  });

  test('after all of that the gateway still creates and execs', async () => {
    const r = await gw.api('POST', '/sandboxes', { templateID: 'busybox' });
    assert.equal(r.status, 201);
    const e = await gw.api('POST', `/sandboxes/${r.body.sandboxID}/exec`, { cmd: 'echo alive' });
    assert.equal(e.body.stdout, 'alive\n');
    assert.equal((await gw.api('DELETE', `/sandboxes/${r.body.sandboxID}`)).status, 204);
  });
});
