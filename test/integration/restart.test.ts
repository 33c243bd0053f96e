// Restart without loss: the gateway is SIGKILLed with live sandboxes and started again on the same
// state dir; it re-adopts them in their true state with their files, continues their TTLs, and
// cleans up orphans on both sides (a container without a record, a record without a container).
import assert from 'node:assert/strict';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createLinuxJailBackend, findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { TEMPLATES_ROOT } from '../helpers/gateway.ts';
import { startChildGateway, waitHealthy, type ChildGateway } from '../helpers/child-gateway.ts';

const children: ChildGateway[] = [];
const ids = new Set<string>();
let stateDir = '';

after(async () => {
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exit));
  if (stateDir) {
    const backend = await createLinuxJailBackend({ stateDir });
    for (const id of ids) await backend.destroy({ id, backend: 'jail', template: 'busybox', ip: '10.78.0.250', data: {} });
    rmSync(stateDir, { recursive: true, force: true });
  }
});

const json = async (r: Response) => (await r.json()) as any;

test('SIGKILL, restart: sandboxes re-adopted (files, paused state, TTL), orphans cleaned', async () => {
  const first = await startChildGateway(['--log-level', 'warn']);
  children.push(first);
  stateDir = first.stateDir;
  await waitHealthy(first.url);

  const a = await json(await first.api('POST', '/sandboxes', { templateID: 'busybox', metadata: { name: 'a' }, envVars: { X: '1' } }));
  const b = await json(await first.api('POST', '/sandboxes', { templateID: 'busybox', timeout: 600 }));
  const c = await json(await first.api('POST', '/sandboxes', { templateID: 'busybox', timeout: 4 }));
  for (const s of [a, b, c]) ids.add(s.sandboxID);
  await first.api('POST', `/sandboxes/${a.sandboxID}/exec`, { cmd: 'echo before-kill > /tmp/proof' });
  assert.equal((await first.api('POST', `/sandboxes/${b.sandboxID}/pause`)).status, 204);
  first.proc.kill('SIGKILL');
  await first.exit;

  // An orphan container (no record) and an orphan record (no container), made behind its back.
  const backend = await createLinuxJailBackend({ stateDir });
  for (const s of [a, b, c]) backend.pool.claim(s.ip); // this second backend must not hand out their addresses
  const orphan = await backend.create({ id: 'orphan0001', template: { name: 'busybox', path: join(TEMPLATES_ROOT, 'busybox-template'), backend: 'jail' }, limits: { memoryMiB: 64, cpus: 1, pids: 64 } });
  ids.add(orphan.id);
  const ghost = join(stateDir, 'records', 'ghost00001.json');
  writeFileSync(ghost, JSON.stringify({ ...JSON.parse(JSON.stringify({ id: 'ghost00001', template: 'busybox', backend: 'jail', ip: '10.78.0.200', limits: { memoryMiB: 64, cpus: 1, pids: 64 }, metadata: {}, envVars: {}, internet: false, createdAt: Date.now(), startedAt: Date.now(), endAt: Date.now() + 60_000, timeoutMs: 60_000, handle: { id: 'ghost00001', backend: 'jail', template: 'busybox', ip: '10.78.0.200', data: {} } })) }));

  const second = await startChildGateway(['--log-level', 'warn'], {}, stateDir);
  children.push(second);
  await waitHealthy(second.url);

  const listed = await json(await second.api('GET', '/sandboxes'));
  const byId = new Map(listed.map((s: { sandboxID: string }) => [s.sandboxID, s]));
  assert.deepEqual([...byId.keys()].sort(), [a.sandboxID, b.sandboxID, c.sandboxID].sort(), 'exactly the three, orphans not adopted');
  const ra = byId.get(a.sandboxID) as any;
  assert.equal(ra.state, 'running');
  assert.deepEqual(ra.metadata, { name: 'a' });
  assert.equal(ra.ip, a.ip, 'same address');
  assert.equal(ra.endAt, a.endAt, 'TTL continues from the stored endAt');
  assert.equal((byId.get(b.sandboxID) as any).state, 'paused', 'a paused sandbox is still paused');

  const proof = await json(await second.api('POST', `/sandboxes/${a.sandboxID}/exec`, { cmd: 'cat /tmp/proof; echo $X' }));
  assert.equal(proof.stdout, 'before-kill\n1\n');
  assert.equal((await second.api('POST', `/sandboxes/${b.sandboxID}/exec`, { cmd: 'true' })).status, 409, 'still frozen');
  assert.equal((await second.api('POST', `/sandboxes/${b.sandboxID}/resume`)).status, 204);
  assert.equal((await json(await second.api('POST', `/sandboxes/${b.sandboxID}/exec`, { cmd: 'echo thawed' }))).stdout, 'thawed\n');

  // Orphans: the container without a record is gone, the record without a container is dropped.
  assert.deepEqual(await findLeftovers([orphan.id], { stateDir }), []);
  assert.equal(existsSync(ghost), false);

  // The 4 s TTL of c kept running across the restart.
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(c.endAt) - Date.now()) + 800));
  assert.equal((await second.api('GET', `/sandboxes/${c.sandboxID}`)).status, 404);
  assert.deepEqual(await findLeftovers([c.sandboxID], { stateDir }), []);

  // A fresh create does not collide with the adopted addresses.
  const d = await json(await second.api('POST', '/sandboxes', { templateID: 'busybox' }));
  ids.add(d.sandboxID);
  assert.ok(![a.ip, b.ip].includes(d.ip));

  second.proc.kill('SIGINT');
  assert.equal(await second.exit, 0);
  assert.deepEqual(await findLeftovers([...ids], { stateDir }), []);
});
