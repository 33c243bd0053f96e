// The bhyve path through the whole gateway, for real: the Linux pool-ctl (guests are network
// namespaces running a real sshd from the template image), the gateway as a child process with
// --bhyve-templates-root and --bhyve-pool-size 2, REST create/exec, the seed's 501s and metrics,
// and SIGINT leaving nothing behind.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { startChildGateway, waitHealthy, type ChildGateway } from '../helpers/child-gateway.ts';
import { POOL_CTL, BUILD_IMAGE, IMAGES, BASE, TEMPLATE } from '../helpers/bhyve-env.ts';

const run = promisify(execFile);

const tag = randomBytes(2).toString('hex');
const prefix = `cpg${tag}`;
const bridge = `cpg${tag}br`;
const state = mkdtempSync(join(tmpdir(), 'coppice-bhyve-gw-'));
const env = {
  COPPICE_POOL_CTL_STATE: state,
  COPPICE_POOL_CTL_SUBNET: '10.77.0.0/24',
  COPPICE_POOL_CTL_BRIDGE: bridge,
  COPPICE_POOL_CTL_PREFIX: prefix,
};
const ctl = async (...args: string[]) =>
  (await run(POOL_CTL, args, { env: { ...process.env, ...env, COPPICE_BHYVE_TEMPLATES_ROOT: IMAGES }, timeout: 120_000 })).stdout;

/** What this test could have left: netns/links with its prefix, its mounts, the guests' processes. */
function leftovers(pids: number[]): string[] {
  const out: string[] = [];
  for (const l of execFileSync('ip', ['netns', 'list']).toString().split('\n')) if (l.startsWith(prefix)) out.push(`netns ${l}`);
  for (const l of execFileSync('ip', ['-br', 'link']).toString().split('\n')) {
    if (l.startsWith(prefix) || l.startsWith(bridge)) out.push(`link ${l.split(' ')[0]}`);
  }
  for (const l of readFileSync('/proc/mounts', 'utf8').split('\n')) if (l.includes(state)) out.push(`mount ${l}`);
  for (const pid of pids) {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!/\) Z /.test(st)) out.push(`process ${pid}: ${st.slice(0, 60)}`);
    } catch {
      /* gone */
    }
  }
  return out;
}

function recordedPids(): number[] {
  const vms = join(state, 'vms');
  if (!existsSync(vms)) return [];
  return readdirSync(vms).flatMap((vm) =>
    ['pid', 'launcher'].flatMap((f) => {
      try {
        return [Number(readFileSync(join(vms, vm, f), 'utf8'))];
      } catch {
        return [];
      }
    }),
  );
}

let gw: ChildGateway | undefined;

before(async () => {
  const used = execFileSync('ip', ['-4', '-o', 'addr']).toString();
  if (used.includes(' 10.77.0.')) throw new Error('10.77.0.0/24 is in use on this host; the test needs it');
  await run(BUILD_IMAGE, [TEMPLATE, IMAGES, BASE], { timeout: 600_000 });
});

after(async () => {
  if (gw && gw.proc.exitCode === null) {
    gw.proc.kill('SIGKILL');
    await gw.exit;
  }
  // Best effort by our own names, whatever happened above.
  try {
    const l = JSON.parse((await ctl('list', '--json')).trim().split('\n').pop()!);
    for (const v of l.vms) await ctl('release', v.vm).catch(() => {});
    await ctl('drain', TEMPLATE).catch(() => {});
  } catch {
    /* fall through */
  }
  try {
    execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  } catch {
    /* not there */
  }
  rmSync(state, { recursive: true, force: true });
  if (gw) rmSync(gw.stateDir, { recursive: true, force: true });
});

test('bhyve through the gateway: startup warm gates readiness, create, exec, 501s, metrics, SIGINT cleans up', async () => {
  gw = await startChildGateway(
    ['--bhyve-templates-root', IMAGES, '--bhyve-pool-size', '2', '--pool-ctl', POOL_CTL, '--drain-timeout', '60'],
    env,
  );
  // Not ready while the two guests warm; ready once they are.
  const seen = await waitHealthy(gw.url, 120_000);
  assert.ok(seen.includes(503), `health reported not-ready during the warm (saw ${[...new Set(seen)]})`);
  const listAtReady = JSON.parse((await ctl('list', '--json')).trim().split('\n').pop()!);
  assert.equal(listAtReady.templates[TEMPLATE].available, 2, 'two guests warm when the gateway turns ready');

  const templates = (await (await gw.api('GET', '/templates')).json()) as { name: string; backend: string }[];
  assert.deepEqual(templates.find((t) => t.name === TEMPLATE), {
    name: TEMPLATE,
    path: join(IMAGES, `${TEMPLATE}.img`),
    backend: 'bhyve',
    // pool-ctl keeps the pool; bhyve v1 has no snapshots (the portal greys its buttons from this).
    capabilities: { snapshots: false, pool: 'external' },
  });

  const created = await gw.api('POST', '/sandboxes', { templateID: TEMPLATE });
  assert.equal(created.status, 201);
  const sbx = (await created.json()) as { sandboxID: string; ip: string; backend: string };
  assert.equal(sbx.backend, 'bhyve');
  assert.match(sbx.ip, /^10\.77\.0\.\d+$/);

  const exec = await gw.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { argv: ['python3', '-c', 'print(6*7)'] });
  assert.equal(exec.status, 200);
  const out = (await exec.json()) as { stdout: string; exitCode: number };
  assert.equal(out.stdout, '42\n');
  assert.equal(out.exitCode, 0);

  for (const op of ['snapshot', 'fork']) {
    const r = await gw.api('POST', `/sandboxes/${sbx.sandboxID}/${op}`);
    assert.equal(r.status, 501);
    const body = (await r.json()) as { code: number; message: string };
    assert.equal(body.code, 501);
    assert.match(body.message, /not supported on bhyve backend v1$/);
  }
  // What a pre-booted guest cannot honour is refused, not accepted and ignored; no guest is taken.
  const availableBefore = JSON.parse((await ctl('list', '--json')).trim().split('\n').pop()!).templates[TEMPLATE].available;
  for (const [body, message] of [
    [{ templateID: TEMPLATE, limits: { memoryMiB: 128 } }, 'limits not supported on bhyve backend v1'],
    [{ templateID: TEMPLATE, allow_internet_access: true }, 'allow_internet_access not supported on bhyve backend v1'],
  ] as const) {
    const r = await gw.api('POST', '/sandboxes', body);
    assert.equal(r.status, 501);
    assert.equal(((await r.json()) as { message: string }).message, message);
  }
  const availableAfter = JSON.parse((await ctl('list', '--json')).trim().split('\n').pop()!).templates[TEMPLATE].available;
  assert.equal(availableAfter, availableBefore, 'no guest was checked out for a refused create');

  // Pause/resume go through pool-ctl; exec refused while paused, works after.
  assert.equal((await gw.api('POST', `/sandboxes/${sbx.sandboxID}/pause`)).status, 204);
  assert.equal((await gw.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { cmd: 'true' })).status, 409);
  assert.equal((await gw.api('POST', `/sandboxes/${sbx.sandboxID}/resume`)).status, 204);
  const again = (await (await gw.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { cmd: 'echo back' })).json()) as { stdout: string };
  assert.equal(again.stdout, 'back\n');

  // The seed's four metrics, matching the one checkout made.
  const pools = (await (await gw.api('GET', '/pool')).json()) as { template: string; available: number; inUse: number }[];
  const pool = pools.find((p) => p.template === TEMPLATE)!;
  assert.deepEqual([pool.available, pool.inUse], [1, 1]);
  const metrics = await (await gw.api('GET', '/metrics')).text();
  assert.match(metrics, /^coppice_bhyve_checkouts_total 1$/m);
  const nsSum = Number(/^coppice_bhyve_checkout_ns_sum (\S+)$/m.exec(metrics)?.[1]);
  assert.ok(nsSum > 1e6 && nsSum < 30e9, `checkout ns sum plausible: ${nsSum}`);
  assert.match(metrics, new RegExp(`^coppice_bhyve_pool_available\\{template="${TEMPLATE}"\\} 1$`, 'm'));
  assert.match(metrics, new RegExp(`^coppice_bhyve_pool_in_use\\{template="${TEMPLATE}"\\} 1$`, 'm'));

  // SIGINT: the sandbox's guest is released, the pool drained, nothing is left.
  const pids = recordedPids();
  assert.ok(pids.length >= 2, 'guests recorded their processes');
  gw.proc.kill('SIGINT');
  assert.equal(await gw.exit, 0, gw.stderr());
  assert.deepEqual(leftovers(pids), []);
});

test('SIGINT during the startup warm drains what was warmed: exit 0, no guest, netns or bridge left', async () => {
  const g = await startChildGateway(
    ['--bhyve-templates-root', IMAGES, '--bhyve-pool-size', '6', '--pool-ctl', POOL_CTL, '--drain-timeout', '60'],
    env,
  );
  try {
    // Mid-warm: not ready yet, and at least one guest exists.
    let pids: number[] = [];
    for (let i = 0; i < 600 && pids.length === 0; i++) {
      pids = recordedPids();
      if (pids.length === 0) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(pids.length > 0, 'a guest was being warmed');
    assert.equal((await fetch(`${g.url}/health`)).status, 503, 'still starting');
    g.proc.kill('SIGINT');
    assert.equal(await g.exit, 0, g.stderr());
    assert.deepEqual(leftovers([...new Set([...pids, ...recordedPids()])]), []);
  } finally {
    if (g.proc.exitCode === null) {
      g.proc.kill('SIGKILL');
      await g.exit;
    }
    rmSync(g.stateDir, { recursive: true, force: true });
  }
});
