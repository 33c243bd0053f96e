// Limits: a cap on live sandboxes and a bounded create queue (429 + Retry-After), request body
// size (413), the buffered exec output cap.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

describe('limits', () => {
  let gw: TestGateway;
  const created: string[] = [];
  before(async () => {
    gw = await startTestGateway(['--max-sandboxes', '3', '--max-concurrent-creates', '1', '--create-queue', '1', '--body-limit', '65536']);
  });
  after(async () => {
    for (const id of created) await gw.api('DELETE', `/sandboxes/${id}`);
    await gw.close();
  });

  test('creates beyond the concurrency + queue bound get 429 with Retry-After; the admitted ones succeed', async () => {
    const results = await Promise.all(
      Array.from({ length: 4 }, () =>
        fetch(`${gw.url}/sandboxes`, {
          method: 'POST',
          headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ templateID: 'busybox' }),
        }),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [201, 201, 429, 429]);
    for (const r of results) {
      const body = (await r.json()) as { sandboxID?: string; code: number };
      if (r.status === 201) created.push(body.sandboxID!);
      else {
        assert.equal(body.code, 429);
        assert.ok(Number(r.headers.get('retry-after')) >= 1, 'Retry-After set');
      }
    }
  });

  test('the live cap: beyond --max-sandboxes a create is 429', async () => {
    const third = await gw.api('POST', '/sandboxes', { templateID: 'busybox' });
    assert.equal(third.status, 201);
    created.push(third.body.sandboxID);
    const fourth = await fetch(`${gw.url}/sandboxes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ templateID: 'busybox' }),
    });
    assert.equal(fourth.status, 429);
    assert.match(((await fourth.json()) as { message: string }).message, /sandbox limit reached \(3 live\)/);
    assert.ok(fourth.headers.get('retry-after'));
  });

  test('a body over --body-limit is 413', async () => {
    const r = await gw.api('POST', `/sandboxes/${created[0]}/exec`, { cmd: 'true', stdin: 'x'.repeat(70_000) });
    assert.equal(r.status, 413);
    assert.equal(r.body.code, 413);
  });

  test('buffered exec keeps at most 16 MiB of output and says it truncated', async () => {
    const r = await gw.api('POST', `/sandboxes/${created[0]}/exec`, { cmd: 'head -c 20000000 /dev/zero | tr "\\0" a' });
    assert.equal(r.status, 200);
    assert.equal(r.body.exitCode, 0);
    assert.equal(r.body.truncated, true);
    assert.equal(r.body.stdout.length, 16 * 1024 * 1024);
  });
});
