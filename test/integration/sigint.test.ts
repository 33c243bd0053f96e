// SIGINT drains for real: the gateway runs as a child process with live sandboxes; the first
// SIGINT refuses new work, destroys every sandbox and exits 0; nothing is left on the host.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createLinuxJailBackend, findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { TEMPLATES_ROOT } from '../helpers/gateway.ts';

const BIN = join(import.meta.dirname, '../../bin/coppice.mjs');

interface Child {
  proc: ChildProcess;
  url: string;
  key: string;
  stateDir: string;
  exit: Promise<number | null>;
}

async function startChild(): Promise<Child> {
  const stateDir = mkdtempSync(join(tmpdir(), 'coppice-sigint-'));
  const key = `k-${Math.random().toString(36).slice(2)}`;
  const proc = spawn(
    process.execPath,
    [BIN, 'serve', '--listen', '127.0.0.1:0', '--state-dir', stateDir, '--templates-root', TEMPLATES_ROOT, '--log-level', 'warn', '--drain-timeout', '20'],
    { env: { ...process.env, COPPICE_API_KEY: key }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    proc.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    proc.on('exit', () => reject(new Error(`gateway exited early: ${err}`)));
  });
  // Wait until it serves.
  for (let i = 0; i < 200; i++) {
    if ((await fetch(`${url}/health`)).status === 200) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  return { proc, url, key, stateDir, exit };
}

const api = (c: Child, method: string, path: string, body?: unknown) =>
  fetch(c.url + path, {
    method,
    headers: { authorization: `Bearer ${c.key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

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
