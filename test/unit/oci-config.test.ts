import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BUSYBOX_PATH,
  DEFAULT_CAPS,
  INIT_ARGS,
  INIT_PATH,
  buildConfig,
  buildExecProcess,
  nofile,
} from '../../src/backends/jail/linux/oci-config.ts';
import { mapExit } from '../../src/backends/jail/linux/exec.ts';
import { parseUserDb } from '../../src/backends/jail/linux/users.ts';
import { hostBatch, sandboxBatch } from '../../src/backends/jail/linux/network.ts';
import { sandboxNames } from '../../src/backends/jail/linux/names.ts';

const input = {
  id: 'abcde12345',
  netnsPath: '/var/run/netns/coppice-abcde12345',
  cgroupsPath: '/coppice/abcde12345',
  limits: { memoryMiB: 256, cpus: 1.5, pids: 100 },
  hostInit: '/usr/bin/tini-static',
  hostBusybox: '/bin/busybox',
};

describe('buildConfig', () => {
  const c = buildConfig(input);

  it('puts limits in the OCI resource fields', () => {
    assert.equal(c.linux.resources.memory.limit, 256 * 1024 * 1024);
    assert.deepEqual(c.linux.resources.cpu, { quota: 150_000, period: 100_000 });
    assert.equal(c.linux.resources.pids.limit, 100);
    assert.deepEqual(c.linux.resources.devices, [{ allow: false, access: 'rwm' }]);
  });

  it('joins the sandbox netns by path and creates the other namespaces', () => {
    assert.deepEqual(c.linux.namespaces, [
      { type: 'pid' },
      { type: 'ipc' },
      { type: 'uts' },
      { type: 'mount' },
      { type: 'network', path: '/var/run/netns/coppice-abcde12345' },
    ]);
    assert.equal(c.linux.cgroupsPath, '/coppice/abcde12345');
    assert.equal(c.hostname, 'abcde12345');
    assert.deepEqual(c.root, { path: 'rootfs', readonly: false });
  });

  it('runs tini as PID 1 from read-only binds of host binaries', () => {
    assert.deepEqual(c.process.args, INIT_ARGS);
    assert.equal(c.process.args[0], INIT_PATH);
    const init = c.mounts.find((m) => m.destination === INIT_PATH);
    const bb = c.mounts.find((m) => m.destination === BUSYBOX_PATH);
    assert.equal(init?.source, '/usr/bin/tini-static');
    assert.equal(bb?.source, '/bin/busybox');
    for (const m of [init, bb]) {
      assert.equal(m?.type, 'bind');
      assert.ok(m?.options?.includes('ro'), 'host binaries must be read-only');
    }
  });

  it('has the runc-spec default mounts, sysfs read-only', () => {
    const dests = c.mounts.map((m) => m.destination);
    for (const d of ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup']) {
      assert.ok(dests.includes(d), `missing mount ${d}`);
    }
    assert.ok(c.mounts.find((m) => m.destination === '/sys')?.options?.includes('ro'));
    assert.ok(!dests.includes('/etc/resolv.conf'), 'resolv.conf is left to the template');
  });

  it('masks and read-only-protects the usual /proc and /sys paths', () => {
    for (const p of ['/proc/kcore', '/proc/keys', '/sys/firmware', '/proc/timer_list']) assert.ok(c.linux.maskedPaths.includes(p), p);
    for (const p of ['/proc/sys', '/proc/sysrq-trigger', '/proc/irq']) assert.ok(c.linux.readonlyPaths.includes(p), p);
  });

  it('gives PID 1 docker default caps, no CAP_SYS_ADMIN, and allows setuid (sudo)', () => {
    assert.equal(c.process.user.uid, 0);
    assert.deepEqual(c.process.capabilities.bounding, DEFAULT_CAPS);
    assert.deepEqual(c.process.capabilities.effective, DEFAULT_CAPS);
    assert.ok(!c.process.capabilities.bounding.includes('CAP_SYS_ADMIN'));
    assert.equal(c.process.noNewPrivileges, false);
    assert.equal(c.process.rlimits[0].type, 'RLIMIT_NOFILE');
  });

  it('never asks for a NOFILE hard limit above the host one', () => {
    assert.deepEqual(nofile(20_000), { type: 'RLIMIT_NOFILE', hard: 20_000, soft: 1024 });
    assert.deepEqual(nofile(Infinity), { type: 'RLIMIT_NOFILE', hard: 524_288, soft: 1024 });
    assert.deepEqual(nofile(512), { type: 'RLIMIT_NOFILE', hard: 512, soft: 512 });
    assert.deepEqual(buildConfig({ ...input, rlimits: [nofile(20_000)] }).process.rlimits, [nofile(20_000)]);
  });

  it('rounds fractional cpus and keeps a floor on the quota', () => {
    const tiny = buildConfig({ ...input, limits: { memoryMiB: 1, cpus: 0.001, pids: 1 } });
    assert.equal(tiny.linux.resources.cpu.quota, 1000);
    assert.equal(tiny.linux.resources.memory.limit, 1048576);
  });
});

describe('buildExecProcess', () => {
  const user = { name: 'user', uid: 1000, gid: 1000, additionalGids: [27], home: '/home/user' };

  it('passes argv through untouched and sets a default env, overridable', () => {
    const argv = ['sh', '-c', `echo "$X" 'a b' \\ ; $(true)`, '', 'ü\n'];
    const p = buildExecProcess({ argv, user, env: { X: '1', PATH: '/opt/bin' } });
    assert.deepEqual(p.args, argv);
    assert.deepEqual(p.env, ['PATH=/opt/bin', 'HOME=/home/user', 'USER=user', 'X=1']);
    assert.equal(p.cwd, '/home/user');
    assert.deepEqual(p.user, { uid: 1000, gid: 1000, additionalGids: [27] });
    assert.equal(p.terminal, false);
  });

  it('defaults PATH and honours cwd', () => {
    const p = buildExecProcess({ argv: ['true'], user, cwd: '/tmp' });
    assert.equal(p.env[0], 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    assert.equal(p.cwd, '/tmp');
  });

  it('non-root users get caps only in the bounding set (setuid still works)', () => {
    const p = buildExecProcess({ argv: ['true'], user });
    assert.deepEqual(p.capabilities.bounding, DEFAULT_CAPS);
    assert.deepEqual(p.capabilities.effective, []);
    assert.deepEqual(p.capabilities.permitted, []);
    assert.equal(p.noNewPrivileges, false);
    const root = buildExecProcess({ argv: ['true'], user: { ...user, uid: 0, gid: 0, additionalGids: [] } });
    assert.deepEqual(root.capabilities.effective, DEFAULT_CAPS);
    assert.equal('additionalGids' in root.user, false);
  });
});

describe('exit mapping', () => {
  it('reports a signal only when we delivered it', () => {
    assert.deepEqual(mapExit(130, null, new Set([2])), { exitCode: null, signal: 'SIGINT' });
    assert.deepEqual(mapExit(130, null, new Set()), { exitCode: 130, signal: null });
    assert.deepEqual(mapExit(137, null, new Set([2])), { exitCode: 137, signal: null });
    assert.deepEqual(mapExit(3, null, new Set([2])), { exitCode: 3, signal: null });
    assert.deepEqual(mapExit(null, 'SIGKILL', new Set()), { exitCode: null, signal: 'SIGKILL' });
  });
});

describe('template user database', () => {
  it('resolves uid, gid, home and supplementary groups', () => {
    const db = parseUserDb(
      'root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000:,,,:/home/user:/bin/bash\n#bad\nbroken:x\n',
      'root:x:0:\nsudo:x:27:user\nuser:x:1000:\nadm:x:4:user,other\n',
    );
    assert.deepEqual(db.byName.get('user'), { name: 'user', uid: 1000, gid: 1000, additionalGids: [27, 4], home: '/home/user' });
    assert.equal(db.byUid.get(0)?.name, 'root');
    assert.equal(db.byName.has('broken'), false);
  });
});

describe('network batches', () => {
  it('names every object from the id and routes a /32', () => {
    const n = sandboxNames('/state', 'abcde12345');
    const net = { ip: '10.78.0.7', gateway: '10.78.0.1', prefix: 24 };
    const host = hostBatch(n, net);
    assert.match(host, /^netns add coppice-abcde12345$/m);
    assert.match(host, /^link add cpcabcde12345h type veth peer name cpcabcde12345c netns coppice-abcde12345$/m);
    assert.match(host, /^addr add 10\.78\.0\.1\/32 dev cpcabcde12345h$/m);
    assert.match(host, /^route add 10\.78\.0\.7\/32 dev cpcabcde12345h$/m);
    const inside = sandboxBatch(n, net);
    assert.match(inside, /^link set cpcabcde12345c name eth0$/m);
    assert.match(inside, /^addr add 10\.78\.0\.7\/24 dev eth0$/m);
    assert.match(inside, /^route add default via 10\.78\.0\.1 dev eth0$/m);
    assert.ok('cpcabcde12345h'.length <= 15, 'IFNAMSIZ');
    assert.equal(n.dir, '/state/sandboxes/abcde12345');
  });
});
