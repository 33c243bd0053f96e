// The microVM pool-ctl against the real thing: QEMU microvm guests booting Debian's cloud kernel
// (TCG on this host kind, KVM where it works) over the bhyve test image; ssh into one, check it is
// its own machine (kernel, memory), pause/resume, release, drain, and nothing left behind. Runs as
// root. Own state dir, subnet, bridge and name prefix, so it never touches another pool. Three
// guests boot in all (TCG: about 5-15 s each).
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release as hostRelease, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { BUILD_IMAGE, IMAGES, BASE, KEY, TEMPLATE } from '../helpers/bhyve-env.ts';
import { guestKernel, MICROVM_CACHE, MICROVM_POOL_CTL, type GuestKernel } from '../helpers/microvm-env.ts';

const run = promisify(execFile);
const MEM_MIB = 256;

const tag = randomBytes(2).toString('hex');
const prefix = `cpm${tag}`;
const bridge = `cpm${tag}br`;
const state = mkdtempSync(join(tmpdir(), 'coppice-poolctl-microvm-test-'));
const net3 = freeNet();
const env = {
  ...process.env,
  COPPICE_POOL_CTL_STATE: state,
  COPPICE_BHYVE_TEMPLATES_ROOT: IMAGES,
  COPPICE_POOL_CTL_SUBNET: `${net3}.0/24`,
  COPPICE_POOL_CTL_BRIDGE: bridge,
  COPPICE_POOL_CTL_PREFIX: prefix,
  COPPICE_MICROVM_CACHE: MICROVM_CACHE,
  COPPICE_MICROVM_MEM_MIB: String(MEM_MIB),
};

/** A 10.98.X.0/24 that no interface or route on this host uses. */
function freeNet(): string {
  const used = execFileSync('ip', ['-4', '-o', 'addr']).toString() + execFileSync('ip', ['-4', 'route']).toString();
  for (let i = 0; i < 100; i++) {
    const n = `10.98.${1 + Math.floor(Math.random() * 254)}`;
    if (!used.includes(`${n}.`)) return n;
  }
  throw new Error('no free 10.98.X.0/24');
}

const ctl = async (...args: string[]) => (await run(MICROVM_POOL_CTL, args, { env, timeout: 300_000 })).stdout;
const lastJson = (s: string) => JSON.parse(s.trim().split('\n').pop() ?? '');

function ssh(ip: string, command: string): Promise<{ stdout: string }> {
  return run('ssh', ['-F', '/dev/null', '-i', KEY, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'ConnectTimeout=10', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', `root@${ip}`, '--', command], { timeout: 60_000 });
}

interface Made { pids: number[]; vms: string[] }
const made: Made = { pids: [], vms: [] };

/** Records of the guests pool-ctl made: qemu pids and vm names (for the leak check by id). */
function recordGuests(): void {
  const vms = join(state, 'vms');
  if (!existsSync(vms)) return;
  for (const vm of readdirSync(vms)) {
    if (!made.vms.includes(vm)) made.vms.push(vm);
    try { made.pids.push(Number(readFileSync(join(vms, vm, 'pid'), 'utf8'))); } catch { /* not booted yet */ }
  }
}

/** Everything this test could have left on the host: qemu processes, taps, disks, the bridge. */
function leftovers(): string[] {
  const out: string[] = [];
  const links = execFileSync('ip', ['-br', 'link']).toString();
  for (const l of links.split('\n')) if (l.startsWith(prefix) || l.startsWith(bridge)) out.push(`link ${l.split(' ')[0]}`);
  for (const pid of made.pids) {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // A zombie is gone for our purposes (this VM's pid 1 may not reap orphans).
      if (!/\) Z /.test(st)) out.push(`process ${pid}: ${st.slice(0, 60)}`);
    } catch { /* gone */ }
  }
  for (const vm of made.vms) if (existsSync(join(state, 'vms', vm))) out.push(`record/disk of ${vm}`);
  if (existsSync(join(state, 'templates', TEMPLATE))) out.push('pinned template image');
  const tables = execFileSync('nft', ['list', 'tables']).toString();
  if (tables.includes(`cpcpool_${bridge}\n`)) out.push(`nft tables cpcpool_${bridge}`);
  return out;
}

let kernel: GuestKernel;

before(async () => {
  await run(BUILD_IMAGE, [TEMPLATE, IMAGES, BASE], { timeout: 600_000 });
  kernel = await guestKernel();
});

after(async () => {
  try {
    const l = lastJson(await ctl('list', '--json'));
    for (const v of l.vms) await ctl('release', v.vm).catch(() => {});
    await ctl('drain', TEMPLATE).catch(() => {});
  } catch { /* fall through to the forced part */ }
  for (const pid of made.pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  for (const vm of made.vms) { try { execFileSync('ip', ['link', 'del', `${vm}t`], { stdio: 'ignore' }); } catch { /* gone */ } }
  try { execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' }); } catch { /* not there */ }
  for (const family of ['bridge', 'inet']) {
    try { execFileSync('nft', ['delete', 'table', family, `cpcpool_${bridge}`], { stdio: 'ignore' }); } catch { /* not there */ }
  }
  rmSync(state, { recursive: true, force: true });
});

test('warm 2 -> checkout -> the guest is its own machine -> pause/resume -> release -> drain leaves nothing', async (t) => {
  let t0 = performance.now();
  // One boot at a time: the queue path of warm (the default runs one boot per host CPU).
  const w = await run(MICROVM_POOL_CTL, ['warm', TEMPLATE, '--count', '2'],
    { env: { ...env, COPPICE_MICROVM_BOOT_PARALLEL: '1' }, timeout: 300_000 });
  t.diagnostic(`warm 2 guests (with the accel probe): ${(performance.now() - t0).toFixed(0)} ms`);
  for (const l of w.stderr.split('\n')) if (/ready in|probe/.test(l)) t.diagnostic(l);
  const warm = lastJson(w.stdout);
  recordGuests();
  assert.deepEqual(warm, { template: TEMPLATE, available: 2 });

  const list = lastJson(await ctl('list', '--json'));
  assert.deepEqual(list.templates[TEMPLATE], { available: 2, in_use: 0 });
  assert.match(list.accel, /^(kvm|tcg)$/);
  t.diagnostic(`accel: ${list.accel}`);
  assert.equal(list.vms.length, 2);
  for (const v of list.vms) {
    assert.equal(v.state, 'available');
    assert.equal(v.accel, list.accel);
    // Warm guests are SIGSTOPped VMMs.
    const st = readFileSync(`/proc/${readFileSync(join(state, 'vms', v.vm, 'pid'), 'utf8').trim()}/stat`, 'utf8');
    assert.match(st, /\) T /, `${v.vm}'s qemu is not stopped`);
  }
  assert.equal(lastJson(await ctl('warm', TEMPLATE, '--count', '2')).available, 2, 'a second warm has nothing to do');

  t0 = performance.now();
  const out = await ctl('checkout', TEMPLATE, '--owner', 'sbxtest01');
  t.diagnostic(`checkout: ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(out.trim().split('\n').length, 1, 'checkout prints exactly one line');
  const co = JSON.parse(out);
  assert.deepEqual(Object.keys(co).sort(), ['ip', 'template', 'vm']);
  assert.equal(co.template, TEMPLATE);
  assert.match(co.ip, new RegExp(`^${net3.replace(/\./g, '\\.')}\\.(\\d+)$`));
  assert.ok(co.vm.startsWith(prefix));

  t0 = performance.now();
  assert.equal((await ssh(co.ip, `python3 -c 'print(6*7)'`)).stdout, '42\n');
  t.diagnostic(`first ssh exec after checkout: ${(performance.now() - t0).toFixed(0)} ms`);
  const facts = (await ssh(co.ip, 'uname -r; sed -n "s/^MemTotal: *\\([0-9]*\\) kB/\\1/p" /proc/meminfo; hostname; cat /proc/1/comm'))
    .stdout.trim().split('\n');
  assert.equal(facts[0], kernel.release, 'the guest runs the cloud kernel');
  assert.notEqual(facts[0], hostRelease(), 'the guest does not run the host kernel');
  const memKb = Number(facts[1]);
  assert.ok(memKb > MEM_MIB * 1024 * 0.7 && memKb <= MEM_MIB * 1024, `MemTotal ${memKb} kB is not ~${MEM_MIB} MiB`);
  assert.equal(facts[2], co.vm);
  assert.equal(facts[3], 'sshd');
  // The guest knows it is virtual: CPUID's hypervisor bit, or the kernel naming the hypervisor.
  const hv = (await ssh(co.ip, 'grep -m1 -ow hypervisor /proc/cpuinfo; dmesg | grep -m1 -i "hypervisor detected"; true')).stdout;
  t.diagnostic(`hypervisor evidence: ${hv.trim().replace(/\n/g, ' | ')}`);
  assert.match(hv, /hypervisor/i);
  t0 = performance.now();
  await ssh(co.ip, 'true');
  t.diagnostic(`a later fresh ssh exec: ${(performance.now() - t0).toFixed(0)} ms`);

  const l2 = lastJson(await ctl('list', '--json'));
  assert.deepEqual(l2.templates[TEMPLATE], { available: 1, in_use: 1 });
  const mine = l2.vms.find((v: { vm: string }) => v.vm === co.vm);
  assert.equal(mine.state, 'in_use');
  assert.equal(mine.owner, 'sbxtest01');

  // Paused: a command sent now completes only after resume.
  await ctl('pause', co.vm);
  assert.equal(lastJson(await ctl('list', '--json')).vms.find((v: { vm: string }) => v.vm === co.vm).state, 'paused');
  let finished = false;
  const late = ssh(co.ip, 'echo late').then((x) => { finished = true; return x; });
  await new Promise((res) => setTimeout(res, 1500));
  assert.equal(finished, false, 'a paused guest answered');
  await ctl('resume', co.vm);
  assert.equal((await late).stdout, 'late\n');

  await isolation(t, co);

  const coPid = Number(readFileSync(join(state, 'vms', co.vm, 'pid'), 'utf8'));
  await ctl('release', co.vm);
  // Released means gone: its qemu, its tap, its disk and record.
  assert.ok(!existsSync(`/proc/${coPid}`) || /\) Z /.test(readFileSync(`/proc/${coPid}/stat`, 'utf8')), 'qemu still running');
  assert.ok(!execFileSync('ip', ['-br', 'link']).toString().split('\n').some((l) => l.startsWith(`${co.vm}t `)), 'tap left');
  assert.ok(!existsSync(join(state, 'vms', co.vm)), 'disk/record left');
  await ctl('release', co.vm); // idempotent
  assert.deepEqual(lastJson(await ctl('list', '--json')).templates[TEMPLATE], { available: 0, in_use: 0 });

  await ctl('drain', TEMPLATE);
  const l4 = lastJson(await ctl('list', '--json'));
  assert.deepEqual(l4.vms, []);
  assert.deepEqual(l4.templates[TEMPLATE], { available: 0, in_use: 0 });
  assert.deepEqual(leftovers(), []);
});

const fwTable = `cpcpool_${bridge}`;
async function counter(family: string, name: string): Promise<number> {
  const out = (await run('nft', ['list', 'counter', family, fwTable, name])).stdout;
  return Number(/packets (\d+)/.exec(out)?.[1] ?? NaN);
}
/** From inside a guest: "0" when a TCP connect to dst:port succeeds within 3 s, else an errno. */
const tcpProbe = (dst: string, port: number) =>
  `python3 -c "import socket; s=socket.socket(); s.settimeout(3); print(s.connect_ex(('${dst}', ${port})))" 2>&1 || echo raised`;

/** Guest A (checked out) against a second guest B and a host listener on the bridge address. */
async function isolation(t: { diagnostic(s: string): void }, a: { vm: string; ip: string }): Promise<void> {
  const b = JSON.parse(await ctl('checkout', TEMPLATE, '--owner', 'sbxtest02'));
  const server = createServer((sock) => sock.end('host service\n'));
  await new Promise<void>((res) => server.listen(0, `${net3}.1`, res));
  const port = (server.address() as AddressInfo).port;
  try {
    // Positive controls: the probe can succeed; the host reaches both guests' sshd; the listener answers the host.
    assert.equal((await ssh(a.ip, tcpProbe('127.0.0.1', 22))).stdout.trim(), '0', 'probe control (guest to itself)');
    assert.equal((await ssh(b.ip, 'echo b')).stdout, 'b\n');
    await new Promise<void>((res, rej) => {
      const c = createConnection(port, `${net3}.1`).once('connect', () => { c.end(); res(); }).once('error', rej);
    });

    const g2g = await counter('bridge', 'guest_to_guest');
    const toHost = await counter('inet', 'to_host');
    const ab = (await ssh(a.ip, tcpProbe(b.ip, 22))).stdout.trim();
    const ah = (await ssh(a.ip, tcpProbe(`${net3}.1`, port))).stdout.trim();
    t.diagnostic(`guest->guest:22 ${ab}; guest->host:${port} ${ah}`);
    assert.notEqual(ab, '0', 'a guest reached another guest\'s sshd');
    assert.notEqual(ah, '0', 'a guest reached a host listener');
    assert.ok(await counter('bridge', 'guest_to_guest') > g2g, 'guest-to-guest drop not counted');
    assert.ok(await counter('inet', 'to_host') > toHost, 'guest-to-host drop not counted');

    // Anti-spoofing: UDP with a source address that is not the guest's (crafted on a raw socket;
    // root in a guest can) is dropped at the bridge.
    const spoofed = await counter('bridge', 'spoofed');
    await ssh(a.ip, `python3 -c "import socket, struct; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW); `
      + `h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 29, 0, 0, 64, 17, 0, socket.inet_aton('${net3}.250'), socket.inet_aton('${net3}.1')); `
      + `[s.sendto(h + struct.pack('!HHHH', 4321, 9, 9, 0) + b'x', ('${net3}.1', 0)) for _ in range(5)]"`);
    assert.ok(await counter('bridge', 'spoofed') >= spoofed + 5, 'spoofed packets not dropped');
  } finally {
    server.close();
    await ctl('release', b.vm);
  }
}

test('checkout on an empty pool exits 3 with a message; bad input exits 2', async () => {
  await assert.rejects(run(MICROVM_POOL_CTL, ['checkout', TEMPLATE], { env }), (e: { code?: number; stderr?: string }) =>
    e.code === 3 && /no ready guest/.test(e.stderr ?? ''));
  await assert.rejects(run(MICROVM_POOL_CTL, ['checkout', '../etc'], { env }), (e: { code?: number }) => e.code === 2);
  await assert.rejects(run(MICROVM_POOL_CTL, ['release', 'not-ours'], { env }), (e: { code?: number }) => e.code === 2);
  await assert.rejects(run(MICROVM_POOL_CTL, ['frobnicate'], { env }), (e: { code?: number }) => e.code === 2);
  await assert.rejects(run(MICROVM_POOL_CTL, ['warm', 'no-such-image', '--count', '1'], { env }), /no image/);
  await assert.rejects(run(MICROVM_POOL_CTL, ['warm', TEMPLATE, '--count', '1'], { env: { ...env, COPPICE_MICROVM_MEM_MIB: '12' } }),
    (e: { code?: number; stderr?: string }) => e.code === 2 && /COPPICE_MICROVM_MEM_MIB/.test(e.stderr ?? ''));
});

test('a guest whose qemu dies while warm is reaped: no process, tap or disk, and the count stays honest', async () => {
  assert.equal(lastJson(await ctl('warm', TEMPLATE, '--count', '1')).available, 1);
  recordGuests();
  const vm = lastJson(await ctl('list', '--json')).vms[0].vm;
  assert.ok(existsSync(join(state, 'vms', vm, 'disk.qcow2')));
  // Kill the guest's qemu by the pid pool-ctl recorded (what a crash would do).
  process.kill(Number(readFileSync(join(state, 'vms', vm, 'pid'), 'utf8')), 'SIGKILL');
  await new Promise((res) => setTimeout(res, 300));
  const l = lastJson(await ctl('list', '--json'));
  assert.deepEqual(l.templates[TEMPLATE], { available: 0, in_use: 0 });
  assert.deepEqual(l.vms, []);
  await ctl('drain', TEMPLATE);
  assert.deepEqual(leftovers(), []);
});

test('per-template memory and vCPUs from <template>.microvm', async () => {
  // A templates root of our own: a hard link of the test image and its .microvm settings.
  const root = join(state, 'conf-templates');
  const name = `${TEMPLATE}-conf`;
  mkdirSync(root, { recursive: true });
  linkSync(join(IMAGES, `${TEMPLATE}.img`), join(root, `${name}.img`));
  writeFileSync(join(root, `${name}.microvm`), 'memory_mib=384\nvcpus=2\n');
  const env2 = { ...env, COPPICE_BHYVE_TEMPLATES_ROOT: root };
  const ctl2 = async (...args: string[]) => (await run(MICROVM_POOL_CTL, args, { env: env2, timeout: 300_000 })).stdout;
  try {
    assert.equal(lastJson(await ctl2('warm', name, '--count', '1')).available, 1);
    recordGuests();
    const co = JSON.parse(await ctl2('checkout', name));
    const [mem, cpus] = (await ssh(co.ip, 'sed -n "s/^MemTotal: *\\([0-9]*\\) kB/\\1/p" /proc/meminfo; nproc')).stdout.trim().split('\n').map(Number);
    assert.ok(mem > 384 * 1024 * 0.7 && mem <= 384 * 1024, `MemTotal ${mem} kB is not ~384 MiB`);
    assert.equal(cpus, 2);
    await ctl2('release', co.vm);
    await ctl2('drain', name);
    assert.ok(!existsSync(join(state, 'templates', name)), 'pinned image of the drained template left');
    writeFileSync(join(root, `${name}.microvm`), 'memory_mib=lots\n');
    await assert.rejects(ctl2('warm', name, '--count', '1'), /memory_mib must be/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  assert.deepEqual(leftovers(), []);
});

test('a guest that misses its boot deadline is torn down; warm exits 1 and names it', async () => {
  await assert.rejects(run(MICROVM_POOL_CTL, ['warm', TEMPLATE, '--count', '1'], { env: { ...env, COPPICE_POOL_CTL_BOOT_TIMEOUT: '1' } }),
    (e: { code?: number; stderr?: string }) => e.code === 1 && /sshd did not answer .* within 1s/.test(e.stderr ?? ''));
  recordGuests();
  assert.deepEqual(lastJson(await ctl('list', '--json')).vms, []);
  await ctl('drain', TEMPLATE);
  assert.deepEqual(leftovers(), []);
});

test('SIGTERM during warm (the gateway\'s deadline) destroys the guests it was booting', async () => {
  const warm = spawn(MICROVM_POOL_CTL, ['warm', TEMPLATE, '--count', '1'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  warm.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  const exited = new Promise<number | null>((res) => warm.once('exit', (code) => res(code)));
  // Wait until its guest's qemu is recorded, i.e. the boot is under way.
  for (let i = 0; i < 600; i++) {
    recordGuests();
    if (made.vms.some((vm) => existsSync(join(state, 'vms', vm, 'pid')))) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  warm.kill('SIGTERM');
  assert.equal(await exited, 1);
  assert.match(stderr, /warm interrupted/);
  assert.deepEqual(lastJson(await ctl('list', '--json')).vms, []);
  await ctl('drain', TEMPLATE);
  assert.deepEqual(leftovers(), []);
});

test('a warm SIGKILLed with its process group (the gateway\'s hang deadline) is reaped by the next verb', async () => {
  const warm = spawn(MICROVM_POOL_CTL, ['warm', TEMPLATE, '--count', '1'], { env, stdio: 'ignore', detached: true });
  const exited = new Promise((res) => warm.once('exit', res));
  for (let i = 0; i < 600; i++) {
    recordGuests();
    if (made.vms.some((vm) => existsSync(join(state, 'vms', vm, 'pid')))) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  process.kill(-(warm.pid ?? 0), 'SIGKILL');
  await exited;
  recordGuests();
  // The guest's qemu (its own session) survived the group kill; the next verb finds its warm dead.
  const vm = made.vms.find((v) => existsSync(join(state, 'vms', v, 'pid'))) ?? '';
  const qemuStat = readFileSync(`/proc/${readFileSync(join(state, 'vms', vm, 'pid'), 'utf8').trim()}/stat`, 'utf8');
  assert.doesNotMatch(qemuStat, /\) [ZX] /, 'qemu died with the group: nothing left to reap');
  const l = lastJson(await ctl('list', '--json'));
  assert.deepEqual(l.vms, []);
  await ctl('drain', TEMPLATE);
  assert.deepEqual(leftovers(), []);
});
