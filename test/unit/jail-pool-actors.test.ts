// Jail warm pools through the real actor tree (in-memory backend): fill, hit, refill, drain.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Gateway } from '../../src/actors/gateway.ts';
import { createLogger } from '../../src/log.ts';
import { FakeBackend } from '../helpers/fake-backend.ts';

async function until(what: string, fn: () => boolean, ms = 5_000) {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a jail pool fills once serving, a create takes a frozen slot (thaw only), the pool refills, drain destroys the slots', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'coppice-pool-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'busybox-template'));
  mkdirSync(join(root, 'base-template'));
  const backend = new FakeBackend();
  const g = new Gateway({ backends: { jail: backend }, roots: { templatesRoot: root }, logger: createLogger('silent'), shardCount: 4, jailPool: { size: 2, templates: ['busybox'] } }).start();
  await until('pool of 2', () => g.pools().find((p) => p.template === 'busybox')?.available === 2);
  assert.equal(g.pools().length, 1, 'only the named template has a pool');
  const slotCreates = backend.calls.filter((c) => c.startsWith('create '));
  assert.equal(slotCreates.length, 2);
  assert.deepEqual(backend.calls.filter((c) => c.startsWith('pause ')).length, 2, 'slots are frozen');
  assert.deepEqual(g.list(), [], 'slots are not listed');

  const before = backend.calls.length;
  const v = await g.create({ templateID: 'busybox', envVars: { A: '1' }, metadata: { k: 'v' } });
  assert.ok(slotCreates.includes(`create ${v.sandboxID}`), 'the sandbox is a pool slot');
  assert.deepEqual(backend.calls.slice(before, before + 1), [`resume ${v.sandboxID}`], 'a pool hit is a thaw');
  assert.deepEqual(v.metadata, { k: 'v' });
  assert.equal(v.state, 'running');

  const cold = await g.create({ templateID: 'busybox', limits: { memoryMiB: 64 } });
  assert.ok(!slotCreates.includes(`create ${cold.sandboxID}`), 'custom limits go cold');
  const base = await g.create({ templateID: 'base' });
  assert.ok(backend.calls.includes(`create ${base.sandboxID}`), 'an unpooled template goes cold');

  await until('refill to 2', () => g.pools()[0]!.available === 2);
  g.sigint();
  assert.equal(await g.stopped, 'drained');
  assert.equal(backend.live.size, 0, 'slots and sandboxes destroyed');
});

test('a pool whose template leaves the registry at a reload is drained and no longer listed', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'coppice-pool-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'busybox-template'));
  const backend = new FakeBackend();
  const g = new Gateway({ backends: { jail: backend }, roots: { templatesRoot: root }, logger: createLogger('silent'), shardCount: 4, jailPool: { size: 2, templates: null } }).start();
  t.after(() => g.actor.stop());
  await until('pool of 2', () => g.pools().find((p) => p.template === 'busybox')?.available === 2);
  rmSync(join(root, 'busybox-template'), { recursive: true });
  await g.reloadTemplates();
  assert.deepEqual(g.pools(), [], 'gone from GET /pool at once');
  await until('its slots destroyed', () => backend.live.size === 0);
  // The template comes back: a reload after the drain gives it a pool again.
  mkdirSync(join(root, 'busybox-template'));
  await g.reloadTemplates();
  await until('a new pool of 2', () => g.pools().find((p) => p.template === 'busybox')?.available === 2);
});
