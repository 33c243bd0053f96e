// The Linux pool-ctl against the real thing: a test image, guests that are netns + real sshd, ssh
// into one, pause/resume, release, drain, and nothing left behind. Runs as root. Uses its own
// state dir, subnet, bridge and name prefix, so it never touches another pool.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import { POOL_CTL, BUILD_IMAGE, IMAGES, BASE, KEY, TEMPLATE } from '../helpers/bhyve-env.ts';

const run = promisify(execFile);
// Built images are a cache (build-image.sh returns at once when its inputs are unchanged).

const tag = randomBytes(2).toString('hex');
const prefix = `cpp${tag}`;
const bridge = `cpp${tag}br`;
const state = mkdtempSync(join(tmpdir(), 'coppice-poolctl-test-'));
const net3 = freeNet();
const env = {
  ...process.env,
  COPPICE_POOL_CTL_STATE: state,
  COPPICE_BHYVE_TEMPLATES_ROOT: IMAGES,
  COPPICE_POOL_CTL_SUBNET: `${net3}.0/24`,
  COPPICE_POOL_CTL_BRIDGE: bridge,
  COPPICE_POOL_CTL_PREFIX: prefix,
};

/** A 10.99.X.0/24 that no interface or route on this host uses. */
function freeNet(): string {
  const used = execFileSync('ip', ['-4', '-o', 'addr']).toString() + execFileSync('ip', ['-4', 'route']).toString();
  for (let i = 0; i < 100; i++) {
    const n = `10.99.${1 + Math.floor(Math.random() * 254)}`;
    if (!used.includes(`${n}.`)) return n;
  }
  throw new Error('no free 10.99.X.0/24');
}

const ctl = async (...args: string[]) => (await run(POOL_CTL, args, { env, timeout: 120_000 })).stdout;
const lastJson = (s: string) => JSON.parse(s.trim().split('\n').pop() ?? '');

function ssh(ip: string, command: string): Promise<{ stdout: string }> {
  return run('ssh', ['-F', '/dev/null', '-i', KEY, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'ConnectTimeout=5', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', `root@${ip}`, '--', command], { timeout: 30_000 });
}

/** Everything this test could have left on the host, found by the names it chose. */
function leftovers(pids: number[]): string[] {
  const out: string[] = [];
  const netns = execFileSync('ip', ['netns', 'list']).toString();
  for (const l of netns.split('\n')) if (l.startsWith(prefix)) out.push(`netns ${l}`);
  const links = execFileSync('ip', ['-br', 'link']).toString();
  for (const l of links.split('\n')) if (l.startsWith(prefix) || l.startsWith(bridge)) out.push(`link ${l.split(' ')[0]}`);
  for (const l of readFileSync('/proc/mounts', 'utf8').split('\n')) if (l.includes(state)) out.push(`mount ${l}`);
  for (const pid of pids) {
    // Z counts as gone: an orphaned launcher is re-parented to pid 1, which reaps it on a normal
    // host (this VM's pid 1 does not reap, so a zombie may stay).
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!/\) Z /.test(st)) out.push(`process ${pid}: ${st.slice(0, 60)}`);
    } catch { /* gone */ }
  }
  return out;
}

function recordedPids(): number[] {
  const vms = join(state, 'vms');
  if (!existsSync(vms)) return [];
  return readdirSync(vms).flatMap((vm) => ['pid', 'launcher'].flatMap((f) => {
    try { return [Number(readFileSync(join(vms, vm, f), 'utf8'))]; } catch { return []; }
  }));
}

let allPids: number[] = [];

before(async () => {
  await run(BUILD_IMAGE, [TEMPLATE, IMAGES, BASE], { timeout: 600_000 });
});

after(async () => {
  // Best-effort teardown by our own names, whatever the tests did.
  try {
    const l = lastJson(await ctl('list', '--json'));
    for (const v of l.vms) await ctl('release', v.vm).catch(() => {});
    await ctl('drain', TEMPLATE).catch(() => {});
  } catch { /* fall through to the forced part */ }
  try { execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' }); } catch { /* not there */ }
  const mnt = join(state, 'templates', TEMPLATE, 'mnt');
  try { execFileSync('umount', [mnt], { stdio: 'ignore' }); } catch { /* not mounted */ }
  rmSync(state, { recursive: true, force: true });
});

test('warm 2 -> list -> checkout -> ssh python -> pause/resume -> release -> drain leaves nothing', async (t) => {
  let t0 = performance.now();
  const warm = lastJson(await ctl('warm', TEMPLATE, '--count', '2'));
  t.diagnostic(`warm 2 guests: ${(performance.now() - t0).toFixed(0)} ms`);
  assert.deepEqual(warm, { template: TEMPLATE, available: 2 });
  allPids = recordedPids();

  const list = lastJson(await ctl('list', '--json'));
  assert.deepEqual(list.templates[TEMPLATE], { available: 2, in_use: 0 });
  assert.equal(list.vms.length, 2);
  for (const v of list.vms) assert.equal(v.state, 'available');

  // A second warm with the same count has nothing to do.
  assert.equal(lastJson(await ctl('warm', TEMPLATE, '--count', '2')).available, 2);

  t0 = performance.now();
  const out = await ctl('checkout', TEMPLATE, '--owner', 'sbxtest01');
  t.diagnostic(`checkout: ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(out.trim().split('\n').length, 1, 'checkout prints exactly one line');
  const co = JSON.parse(out);
  assert.deepEqual(Object.keys(co).sort(), ['ip', 'template', 'vm']);
  assert.equal(co.template, TEMPLATE);
  assert.match(co.ip, new RegExp(`^${net3.replace(/\./g, '\\.')}\\.(\\d+)$`));
  assert.ok(co.vm.startsWith(prefix));

  const r = await ssh(co.ip, `python3 -c 'print(6*7)'`);
  assert.equal(r.stdout, '42\n');
  // The guest looks like a machine whose / is the image: its own hostname, pid 1 is sshd.
  const who = await ssh(co.ip, 'hostname; cat /proc/1/comm; head -1 /proc/mounts | cut -d" " -f2,3');
  assert.equal(who.stdout, `${co.vm}\nsshd\n/ overlay\n`);

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
  await new Promise((res) => setTimeout(res, 700));
  assert.equal(finished, false, 'a paused guest answered');
  await ctl('resume', co.vm);
  assert.equal((await late).stdout, 'late\n');

  await ctl('release', co.vm);
  await ctl('release', co.vm); // idempotent
  const l3 = lastJson(await ctl('list', '--json'));
  assert.deepEqual(l3.templates[TEMPLATE], { available: 1, in_use: 0 });

  await ctl('drain', TEMPLATE);
  const l4 = lastJson(await ctl('list', '--json'));
  assert.deepEqual(l4.vms, []);
  assert.deepEqual(l4.templates[TEMPLATE], { available: 0, in_use: 0 });
  assert.deepEqual(leftovers(allPids), []);
});

test('checkout on an empty pool exits 3 with a message; bad input exits 2', async () => {
  await assert.rejects(run(POOL_CTL, ['checkout', TEMPLATE], { env }), (e: { code?: number; stderr?: string }) =>
    e.code === 3 && /no ready guest/.test(e.stderr ?? ''));
  await assert.rejects(run(POOL_CTL, ['checkout', '../etc'], { env }), (e: { code?: number }) => e.code === 2);
  await assert.rejects(run(POOL_CTL, ['release', 'not-ours'], { env }), (e: { code?: number }) => e.code === 2);
  await assert.rejects(run(POOL_CTL, ['frobnicate'], { env }), (e: { code?: number }) => e.code === 2);
  await assert.rejects(run(POOL_CTL, ['warm', 'no-such-image', '--count', '1'], { env }), /no image/);
});

test('a guest that dies while warm is reaped, and the pool count stays honest', async () => {
  assert.equal(lastJson(await ctl('warm', TEMPLATE, '--count', '1')).available, 1);
  const pids = recordedPids();
  allPids.push(...pids);
  const vm = lastJson(await ctl('list', '--json')).vms[0].vm;
  // Kill the guest's pid 1 by the pid pool-ctl recorded (what a crash would do).
  process.kill(Number(readFileSync(join(state, 'vms', vm, 'pid'), 'utf8')), 'SIGKILL');
  await new Promise((res) => setTimeout(res, 200));
  const l = lastJson(await ctl('list', '--json'));
  assert.deepEqual(l.templates[TEMPLATE], { available: 0, in_use: 0 });
  assert.deepEqual(l.vms, []);
  await ctl('drain', TEMPLATE);
  assert.deepEqual(leftovers(pids), []);
});
