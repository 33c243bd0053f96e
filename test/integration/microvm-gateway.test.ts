// The full-kernel class through the gateway with the microVM pool-ctl (real QEMU guests, TCG
// here): a python-bhyve sandbox runs the guest's own kernel, with the guest's memory, python3
// works, GET /pool says which acceleration runs the guests, pause stops progress, and SIGINT
// leaves no qemu process, tap, bridge or record of this test behind.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { release as hostRelease, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { startChildGateway, waitHealthy, type ChildGateway } from '../helpers/child-gateway.ts';
import { BASE, BUILD_IMAGE, IMAGES, TEMPLATE } from '../helpers/bhyve-env.ts';
import { guestKernel, MICROVM_CACHE, MICROVM_POOL_CTL, type GuestKernel } from '../helpers/microvm-env.ts';

const run = promisify(execFile);
const tag = randomBytes(2).toString('hex');
const prefix = `cpv${tag}`;
const bridge = `cpv${tag}br`;
const state = mkdtempSync(join(tmpdir(), 'coppice-microvm-gw-'));

// The gateway's bhyve backend takes guest addresses from 10.77.0.0/24 (the seed's subnet).
const net3 = '10.77.0';
const env = {
  COPPICE_POOL_CTL_STATE: state,
  COPPICE_POOL_CTL_SUBNET: `${net3}.0/24`,
  COPPICE_POOL_CTL_BRIDGE: bridge,
  COPPICE_POOL_CTL_PREFIX: prefix,
  COPPICE_MICROVM_CACHE: MICROVM_CACHE,
  COPPICE_MICROVM_MEM_MIB: '256',
};
const ctl = async (...args: string[]) =>
  (await run(MICROVM_POOL_CTL, args, { env: { ...process.env, ...env, COPPICE_BHYVE_TEMPLATES_ROOT: IMAGES }, timeout: 300_000 })).stdout;

const pids: number[] = [];
function recordPids(): void {
  const vms = join(state, 'vms');
  if (!existsSync(vms)) return;
  for (const vm of readdirSync(vms)) {
    try {
      const pid = Number(readFileSync(join(vms, vm, 'pid'), 'utf8'));
      if (!pids.includes(pid)) pids.push(pid);
    } catch {
      /* not booted yet */
    }
  }
}

function leftovers(): string[] {
  const out: string[] = [];
  for (const l of execFileSync('ip', ['-br', 'link']).toString().split('\n')) {
    if (l.startsWith(prefix) || l.startsWith(bridge)) out.push(`link ${l.split(' ')[0]}`);
  }
  for (const pid of pids) {
    try {
      if (!/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) out.push(`qemu ${pid}`);
    } catch {
      /* gone */
    }
  }
  if (existsSync(join(state, 'vms')) && readdirSync(join(state, 'vms')).length > 0) out.push('guest records');
  return out;
}

let gw: ChildGateway | undefined;
let kernel: GuestKernel;

before(async () => {
  const used = execFileSync('ip', ['-4', '-o', 'addr']).toString();
  if (used.includes(' 10.77.0.')) throw new Error('10.77.0.0/24 is in use on this host; the test needs it');
  await run(BUILD_IMAGE, [TEMPLATE, IMAGES, BASE], { timeout: 600_000 });
  kernel = await guestKernel();
});

after(async () => {
  if (gw && gw.proc.exitCode === null) {
    gw.proc.kill('SIGKILL');
    await gw.exit;
  }
  try {
    const l = JSON.parse((await ctl('list', '--json')).trim().split('\n').pop()!);
    for (const v of l.vms) await ctl('release', v.vm).catch(() => {});
    await ctl('drain', TEMPLATE).catch(() => {});
  } catch {
    /* fall through */
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  try {
    execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  } catch {
    /* not there */
  }
  rmSync(state, { recursive: true, force: true });
  if (gw) rmSync(gw.stateDir, { recursive: true, force: true });
});

test('a microVM sandbox through the gateway runs its own kernel; pause stops it; SIGINT leaves nothing', async (t) => {
  gw = await startChildGateway(
    ['--bhyve-templates-root', IMAGES, '--bhyve-pool-size', '1', '--pool-ctl', MICROVM_POOL_CTL, '--drain-timeout', '120'],
    env,
  );
  await waitHealthy(gw.url, 300_000);
  recordPids();
  const pool = ((await (await gw.api('GET', '/pool')).json()) as { template: string; accel?: string }[]).find((p) => p.template === TEMPLATE);
  assert.match(pool?.accel ?? '', /^(kvm|tcg)$/, JSON.stringify(pool));
  t.diagnostic(`accel: ${pool?.accel}`);

  const created = await gw.api('POST', '/sandboxes', { templateID: TEMPLATE });
  assert.equal(created.status, 201, await created.clone().text());
  const id = ((await created.json()) as { sandboxID: string }).sandboxID;
  recordPids();
  const exec = async (cmd: string) => ((await (await gw!.api('POST', `/sandboxes/${id}/exec`, { cmd, timeoutMs: 60_000 })).json()) as { stdout: string; exitCode: number });

  const uname = (await exec('uname -r')).stdout.trim();
  assert.equal(uname, kernel.release, 'the guest kernel, not the host');
  assert.notEqual(uname, hostRelease());
  const memKiB = Number(/MemTotal:\s+(\d+)/.exec((await exec('cat /proc/meminfo')).stdout)?.[1]);
  assert.ok(memKiB > 150 * 1024 && memKiB <= 256 * 1024, `MemTotal ${memKiB} kB for a 256 MiB guest`);
  assert.match((await exec('grep -c hypervisor /proc/cpuinfo || dmesg | grep -ci hypervisor')).stdout, /[1-9]/);
  assert.equal((await exec("python3 -c 'print(6*7)'")).stdout, '42\n');

  // Paused: a counter makes no progress; resumed: it goes on.
  await exec(`nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done' >/dev/null 2>&1 &`);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await gw.api('POST', `/sandboxes/${id}/pause`)).status, 204);
  // The sandbox's guest is a stopped VMM while paused (no vCPU runs: no progress at all).
  const vms = JSON.parse((await ctl('list', '--json')).trim().split('\n').pop()!).vms as { vm: string; owner?: string; state: string }[];
  const mine = vms.find((v) => v.owner === id);
  assert.ok(mine, JSON.stringify(vms));
  const qemu = readFileSync(join(state, 'vms', mine.vm, 'pid'), 'utf8').trim();
  assert.match(readFileSync(`/proc/${qemu}/stat`, 'utf8'), /\) T /, 'the guest\'s qemu is stopped');
  assert.equal((await gw.api('POST', `/sandboxes/${id}/resume`)).status, 204);
  assert.doesNotMatch(readFileSync(`/proc/${qemu}/stat`, 'utf8'), /\) T /, 'running again');
  const a = Number((await exec('cat /tmp/n')).stdout);
  await new Promise((r) => setTimeout(r, 1000));
  const b = Number((await exec('cat /tmp/n')).stdout);
  assert.ok(b > a, `progress after resume (${a} -> ${b})`);

  assert.equal((await gw.api('DELETE', `/sandboxes/${id}`)).status, 204);
  gw.proc.kill('SIGINT');
  assert.equal(await gw.exit, 0, gw.stderr());
  assert.deepEqual(leftovers(), []);
});
