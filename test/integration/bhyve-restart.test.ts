// Restart without loss on the bhyve backend: a guest checked out by a gateway that is SIGKILLed is
// re-adopted by the next start (found through `pool-ctl list --json`, its SSH connection dialled
// again), and a checked-out guest whose owner has no record is released.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { startChildGateway, waitHealthy, type ChildGateway } from '../helpers/child-gateway.ts';
import { POOL_CTL, BUILD_IMAGE, IMAGES, BASE, TEMPLATE } from '../helpers/bhyve-env.ts';

const run = promisify(execFile);

const tag = randomBytes(2).toString('hex');
const state = mkdtempSync(join(tmpdir(), 'coppice-bhyve-rs-'));
const env = {
  COPPICE_POOL_CTL_STATE: state,
  COPPICE_POOL_CTL_SUBNET: '10.77.0.0/24',
  COPPICE_POOL_CTL_BRIDGE: `cpr${tag}br`,
  COPPICE_POOL_CTL_PREFIX: `cpr${tag}`,
};
const ctl = async (...args: string[]) =>
  (await run(POOL_CTL, args, { env: { ...process.env, ...env, COPPICE_BHYVE_TEMPLATES_ROOT: IMAGES }, timeout: 120_000 })).stdout;
const list = async () => JSON.parse((await ctl('list', '--json')).trim().split('\n').pop()!);
const children: ChildGateway[] = [];
let stateDir = '';

before(async () => {
  if (execFileSync('ip', ['-4', '-o', 'addr']).toString().includes(' 10.77.0.')) throw new Error('10.77.0.0/24 is in use on this host');
  await run(BUILD_IMAGE, [TEMPLATE, IMAGES, BASE], { timeout: 600_000 });
});

after(async () => {
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exit));
  try {
    for (const v of (await list()).vms) await ctl('release', v.vm).catch(() => {});
    await ctl('drain', TEMPLATE).catch(() => {});
  } catch {
    /* fall through */
  }
  try {
    execFileSync('ip', ['link', 'del', env.COPPICE_POOL_CTL_BRIDGE], { stdio: 'ignore' });
  } catch {
    /* not there */
  }
  rmSync(state, { recursive: true, force: true });
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

const args = ['--bhyve-templates-root', IMAGES, '--pool-ctl', POOL_CTL, '--log-level', 'warn'];
const json = async (r: Response) => (await r.json()) as any;

test('bhyve: SIGKILL then restart re-adopts the checked-out guest and releases an unowned one', async () => {
  const first = await startChildGateway([...args, '--bhyve-pool-size', '2'], env);
  children.push(first);
  stateDir = first.stateDir;
  await waitHealthy(first.url, 120_000);
  const sbx = await json(await first.api('POST', '/sandboxes', { templateID: TEMPLATE, metadata: { keep: 'me' } }));
  assert.match(sbx.ip, /^10\.77\.0\.\d+$/);
  const w = await json(await first.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { cmd: 'echo survived > /root/proof' }));
  assert.equal(w.exitCode, 0);
  first.proc.kill('SIGKILL');
  await first.exit;

  // A guest checked out for a sandbox nobody recorded (a create cut short by the crash).
  const orphan = JSON.parse((await ctl('checkout', TEMPLATE, '--owner', 'ghostbhyve')).trim());

  const second = await startChildGateway(args, env, stateDir);
  children.push(second);
  await waitHealthy(second.url, 60_000);
  const listed = await json(await second.api('GET', '/sandboxes'));
  assert.deepEqual(listed.map((s: { sandboxID: string }) => s.sandboxID), [sbx.sandboxID]);
  assert.equal(listed[0].backend, 'bhyve');
  assert.equal(listed[0].ip, sbx.ip);
  assert.deepEqual(listed[0].metadata, { keep: 'me' });
  const r = await json(await second.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { cmd: 'cat /root/proof' }));
  assert.equal(r.stdout, 'survived\n', 'same guest, its files intact, SSH dialled again');
  const vms = (await list()).vms as { vm: string; state: string; owner?: string }[];
  assert.ok(!vms.some((v) => v.vm === orphan.vm && v.state === 'in_use'), 'the unowned guest was released');

  second.proc.kill('SIGINT');
  assert.equal(await second.exit, 0);
  assert.equal((await list()).vms.filter((v: { state: string }) => v.state === 'in_use').length, 0, 'nothing in use after the drain');
});
