// Operator ceilings on one create (--max-memory-mib, --max-cpus, --max-pids, --max-timeout): a
// create asking for more is 400 naming the field, before anything is made; at the ceiling it works.
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

  test('at the ceilings a create succeeds with those limits', async () => {
    const r = await gw.api('POST', '/sandboxes', { templateID: 'busybox', timeout: 600, limits: { memoryMiB: 256, cpus: 2, pids: 128 } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    created.push(r.body.sandboxID);
    assert.deepEqual({ ...r.body.limits, diskMiB: undefined }, { memoryMiB: 256, cpus: 2, pids: 128, diskMiB: undefined });
  });
});
