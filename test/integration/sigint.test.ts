// SIGINT drains for real: the gateway runs as a child process with live sandboxes; the first
// SIGINT refuses new work, destroys every sandbox and exits 0; nothing is left on the host.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, describe, test } from 'node:test';
import { createLinuxJailBackend, findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { startChildGateway, waitHealthy, type ChildGateway } from '../helpers/child-gateway.ts';

type Child = ChildGateway;
const startChild = async () => {
  const c = await startChildGateway(['--drain-timeout', '20']);
  await waitHealthy(c.url);
  return c;
};
const api = (c: Child, method: string, path: string, body?: unknown) => c.api(method, path, body);

describe('SIGINT', () => {
  const dirs: string[] = [];
  const ids: string[] = [];
  const made = new Map<string, string>(); // sandbox id -> state dir
  after(async () => {
    // Whatever a failed assertion or the forced stop left, remove it by id.
    for (const [id, stateDir] of made) {
      const backend = await createLinuxJailBackend({ stateDir });
      await backend.destroy({ id, backend: 'jail', template: 'busybox', ip: '10.78.0.250', data: {} });
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('first SIGINT: 503 to new work, sandboxes destroyed, exit 0, nothing left', async () => {
    const c = await startChild();
    dirs.push(c.stateDir);
    for (let i = 0; i < 3; i++) {
      const r = await api(c, 'POST', '/sandboxes', { templateID: 'busybox' });
      assert.equal(r.status, 201);
      ids.push(((await r.json()) as { sandboxID: string }).sandboxID);
      made.set(ids.at(-1)!, c.stateDir);
    }
    // A command running at SIGINT time must not hold the drain up.
    void api(c, 'POST', `/sandboxes/${ids[0]}/exec`, { cmd: 'sleep 60' }).catch(() => {});
    await new Promise((r) => setTimeout(r, 200));
    c.proc.kill('SIGINT');
    // While it drains, new work gets 503 (or the connection is already closed).
    const during = await api(c, 'POST', '/sandboxes', { templateID: 'busybox' }).then((r) => r.status, () => 'closed');
    assert.ok(during === 503 || during === 'closed', `during drain: ${during}`);
    assert.equal(await c.exit, 0);
    assert.deepEqual(await findLeftovers(ids, { stateDir: c.stateDir }), []);
  });

  test('a second SIGINT exits at once', async () => {
    const c = await startChild();
    dirs.push(c.stateDir);
    // Enough sandboxes that the drain is still running when the second signal lands.
    const rs = await Promise.all(Array.from({ length: 8 }, () => api(c, 'POST', '/sandboxes', { templateID: 'busybox' })));
    for (const r of rs) made.set(((await r.json()) as { sandboxID: string }).sandboxID, c.stateDir);
    c.proc.kill('SIGINT');
    // Two signals sent back to back can merge into one in the kernel: space them.
    await new Promise((r) => setTimeout(r, 15));
    c.proc.kill('SIGINT');
    assert.equal(await c.exit, 130);
  });
});
