// Warm pools of frozen jail sandboxes: a create on a pool hit is a thaw plus bookkeeping; the pool
// refills in the background; SIGINT drains it with nothing left.
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createLinuxJailBackend, findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { startChildGateway, waitHealthy, type ChildGateway } from '../helpers/child-gateway.ts';

let gw: ChildGateway | undefined;
const seen = new Set<string>();
const sandboxDirs = () => {
  try {
    return readdirSync(join(gw!.stateDir, 'sandboxes'));
  } catch {
    return [];
  }
};

after(async () => {
  if (gw && gw.proc.exitCode === null) {
    gw.proc.kill('SIGKILL');
    await gw.exit;
  }
  if (gw) {
    // Anything a failure left, by the ids this gateway used.
    const backend = await createLinuxJailBackend({ stateDir: gw.stateDir });
    for (const id of [...seen, ...sandboxDirs()]) await backend.destroy({ id, backend: 'jail', template: 'busybox', ip: '10.78.0.250', data: {} });
    rmSync(gw.stateDir, { recursive: true, force: true });
  }
});

async function poolOf(g: ChildGateway, template: string) {
  const pools = (await (await g.api('GET', '/pool')).json()) as { template: string; available: number; backend: string; state: string }[];
  return pools.find((p) => p.template === template);
}

async function until(what: string, fn: () => Promise<boolean>, ms = 30_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  // Say what the pool and the gateway said (a failed refill backs off 30 s: its error is in the pool view).
  const pool = gw ? await poolOf(gw, 'busybox').catch(() => undefined) : undefined;
  throw new Error(`timed out waiting for ${what}; pool ${JSON.stringify(pool)}; gateway stderr: ${gw?.stderr().slice(-2000)}`);
}

test('jail pool: warms to 4, a create is a pool hit, it refills to 4, SIGINT leaves nothing', async () => {
  gw = await startChildGateway(['--jail-pool-size', '4', '--jail-pool-templates', 'busybox', '--drain-timeout', '60']);
  await waitHealthy(gw.url);
  await until('pool of 4', async () => (await poolOf(gw!, 'busybox'))?.available === 4);
  for (const id of sandboxDirs()) seen.add(id);
  assert.equal(seen.size, 4, 'four frozen sandboxes exist');
  const listed = (await (await gw.api('GET', '/sandboxes')).json()) as unknown[];
  assert.equal(listed.length, 0, 'pool slots are not callers\' sandboxes');
  assert.equal((await poolOf(gw, 'base')), undefined, 'only the named template is pooled');

  const r = await gw.api('POST', '/sandboxes', { templateID: 'busybox', envVars: { FROM: 'create' }, metadata: { m: '1' } });
  assert.equal(r.status, 201);
  const sbx = (await r.json()) as { sandboxID: string; state: string; metadata: Record<string, string> };
  assert.ok(seen.has(sbx.sandboxID), 'the sandbox came from the pool');
  assert.equal(sbx.state, 'running');
  assert.deepEqual(sbx.metadata, { m: '1' });
  const e = (await (await gw.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { cmd: 'echo $FROM; hostname' })).json()) as { stdout: string };
  assert.equal(e.stdout, `create\n${sbx.sandboxID}\n`, 'thawed, with the caller\'s envVars');
  const metrics = await (await gw.api('GET', '/metrics')).text();
  assert.match(metrics, /coppice_sandbox_create_seconds_count\{backend="jail",outcome="pool"\} 1/);

  // Custom limits cannot be served by a slot: cold create.
  const cold = (await (await gw.api('POST', '/sandboxes', { templateID: 'busybox', limits: { memoryMiB: 128 } })).json()) as { sandboxID: string };
  assert.ok(!seen.has(cold.sandboxID));
  seen.add(cold.sandboxID);

  await until('refill to 4', async () => (await poolOf(gw!, 'busybox'))?.available === 4);
  for (const id of sandboxDirs()) seen.add(id);
  assert.equal(sandboxDirs().length, 6, '4 slots + 2 sandboxes');

  gw.proc.kill('SIGINT');
  assert.equal(await gw.exit, 0, gw.stderr());
  assert.deepEqual(await findLeftovers([...seen], { stateDir: gw.stateDir }), []);
});
