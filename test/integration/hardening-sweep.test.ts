// Leftover sweeps by naming scheme (issue 13 item 5): host objects leaked on purpose (a loop device
// of a disk image whose dir is gone, a netns, a veth pair, a cgroup, an exec file of a dead gateway,
// a sandbox nobody tracks, a dir with an attached image) are found by findLeftovers and removed by
// the start sweep (what no container can own) or the drain sweep (everything but live work), and
// a SIGINT drain of a real gateway sweeps them too: exact zero by name afterwards.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { SandboxHandle, Template } from '../../src/backends/types.ts';
import { createLinuxJailBackend, findLeftovers, findLeftoversByName } from '../../src/backends/jail/linux/index.ts';
import { cgroupDirs, sandboxNames } from '../../src/backends/jail/linux/names.ts';
import { startChildGateway, waitHealthy } from '../helpers/child-gateway.ts';
import { TEMPLATES_ROOT } from '../helpers/gateway.ts';
import { freeSubnet } from '../helpers/jail-app.ts';

const busyboxPath = join(TEMPLATES_ROOT, 'busybox-template');
const skip = process.getuid?.() !== 0 ? 'needs root' : !existsSync(busyboxPath) ? 'no busybox template' : false;
const template: Template = { name: 'busybox', path: busyboxPath, backend: 'jail' };
const limits = { memoryMiB: 128, cpus: 1, pids: 64, diskMiB: 16 };

const ids: string[] = [];
const newId = () => {
  const a = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let id = 's';
  for (const b of randomBytes(9)) id += a[b % a.length];
  ids.push(id);
  return id;
};
const stateDirs: string[] = [];
const execFiles: string[] = [];

/** An image attached to a loop device without a mount (as a create killed between the two leaves it). */
function attachImage(image: string): string {
  mkdirSync(dirname(image), { recursive: true });
  writeFileSync(image, '');
  execFileSync('truncate', ['-s', '16M', image]);
  return execFileSync('losetup', ['-f', '--show', image]).toString().trim();
}

/** Network and cgroup objects named for `id`, with no container behind them. */
function leakHostObjects(id: string): void {
  const n = sandboxNames('/nonexistent', id);
  execFileSync('ip', ['netns', 'add', n.netns]);
  execFileSync('ip', ['link', 'add', n.vethHost, 'type', 'veth', 'peer', 'name', n.vethPeer]);
  const cg = cgroupDirs(id).find((d) => existsSync(dirname(dirname(d))) && dirname(dirname(d)) !== '/sys/fs/cgroup');
  mkdirSync(cg!, { recursive: true });
}

/** An exec file of a gateway process that has exited (its pid is dead). */
function leakExecFile(): string {
  const pid = spawnSync('true').pid!;
  mkdirSync('/run/coppice/exec', { recursive: true });
  const f = `/run/coppice/exec/exec-${pid}-1.pid`;
  writeFileSync(f, '1');
  execFiles.push(f);
  return f;
}

describe('leftover sweeps by name', { skip }, () => {
  after(async () => {
    // Whatever a failed assertion left, removed by id (teardown is by name, like the sweep).
    for (const stateDir of stateDirs) {
      const b = await createLinuxJailBackend({ stateDir, subnet: freeSubnet() });
      for (const id of ids) await b.destroy({ id, backend: 'jail', template: 'busybox', ip: '', data: {} });
      await b.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
    for (const f of execFiles) rmSync(f, { force: true });
  });

  it('the start sweep removes what no container owns; the drain sweep the rest, but never live work', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'coppice-sweep-'));
    stateDirs.push(stateDir);
    const subnet = freeSubnet();
    const first = await createLinuxJailBackend({ stateDir, subnet });
    const untracked = await first.create({ id: newId(), template, limits });
    await first.close(); // as after a crash: the sandbox runs on, no record says so

    const deletedImage = newId();
    const imageDir = sandboxNames(stateDir, deletedImage).dir;
    const loop = attachImage(join(imageDir, 'disk.img'));
    rmSync(imageDir, { recursive: true });
    const network = newId();
    leakHostObjects(network);
    const withDir = newId();
    attachImage(sandboxNames(stateDir, withDir).diskImage);
    const execFile = leakExecFile();

    const before = await findLeftovers([deletedImage, network, withDir], { stateDir });
    assert.ok(before.some((l) => l.startsWith(`loop ${loop}`)), before.join('\n'));
    assert.ok(before.some((l) => l.startsWith('netns')) && before.some((l) => l.startsWith('veth')) && before.some((l) => l.startsWith('cgroup')), before.join('\n'));
    assert.ok((await findLeftoversByName({ stateDir })).includes(`exec file ${execFile}`));

    // Start: ownerless objects go; a live container and a sandbox dir are reconcile's, not the sweep's.
    const second = await createLinuxJailBackend({ stateDir, subnet });
    second.pool.claim(untracked.ip); // its address is taken on the host
    assert.deepEqual(await findLeftovers([deletedImage, network], { stateDir }), []);
    assert.equal(existsSync(execFile), false);
    assert.ok((await findLeftovers([untracked.id], { stateDir })).some((l) => l.startsWith('runc container')));
    assert.ok((await findLeftovers([withDir], { stateDir })).some((l) => l.startsWith('loop')));

    // Drain: everything by name goes except what this backend runs.
    const live: SandboxHandle = await second.create({ id: newId(), template, limits });
    const r = await second.sweep!();
    assert.deepEqual(r.left, []);
    assert.deepEqual(new Set(r.swept), new Set([untracked.id, withDir]));
    assert.deepEqual(await findLeftovers([untracked.id, withDir], { stateDir }), []);
    assert.ok((await findLeftovers([live.id], { stateDir })).some((l) => l.startsWith('runc container')), 'live work is not swept');
    await second.destroy(live);
    await second.close();
    assert.deepEqual(await findLeftoversByName({ stateDir }), []);
  });

  it('a SIGINT drain sweeps leftovers no actor knows about', async () => {
    const c = await startChildGateway(['--drain-timeout', '20']);
    stateDirs.push(c.stateDir);
    await waitHealthy(c.url);
    const r = await c.api('POST', '/sandboxes', { templateID: 'busybox' });
    assert.equal(r.status, 201);
    ids.push(((await r.json()) as { sandboxID: string }).sandboxID);
    // Leaked while it serves: a dir with an attached image, and network objects of no container.
    const withDir = newId();
    attachImage(sandboxNames(c.stateDir, withDir).diskImage);
    leakHostObjects(newId());
    assert.ok((await findLeftoversByName({ stateDir: c.stateDir })).length > 0);
    c.proc.kill('SIGINT');
    assert.equal(await c.exit, 0, c.stderr().slice(-2000));
    assert.deepEqual(await findLeftoversByName({ stateDir: c.stateDir }), []);
  });
});
