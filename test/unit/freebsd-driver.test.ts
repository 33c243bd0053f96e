// Command-plan tests for the FreeBSD jail driver against a recording runner: create (and its
// rollbacks), snapshot, fork, destroy, listLive; exec/pause/resume are in freebsd-exec-pause.test.ts. The driver is
// UNTESTED ON REAL FREEBSD: these tests pin the exact argv it would run, in order, including the
// rollback order when a step fails; they cannot tell whether FreeBSD accepts those commands.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CoppiceError } from '../../src/errors.ts';
import type { CreateSpec, SandboxHandle, Template } from '../../src/backends/types.ts';
import { createFreebsdJailBackend } from '../../src/backends/jail/freebsd/index.ts';
import { RecordingRunner } from '../../src/backends/jail/freebsd/recording-runner.ts';

const ID = 'abc0123456';
const FORK = 'fork000001';
const J = `coppice-${ID}`;
const NOW = '2026-01-02T03:04:05.000Z';
const template: Template = { name: 'base', path: '/nonexistent/base-template', backend: 'jail' };
const spec: CreateSpec = { id: ID, template, limits: { memoryMiB: 256, cpus: 1.5, pids: 100 } };

/** Command lines for a sandbox `id` whose epair came out as epair7 and whose address is `ip`. */
function createPlan(id: string, ip: string, origin = 'tank/cpc/templates/base@base'): string[] {
  const j = `coppice-${id}`;
  return [
    `zfs clone -o mountpoint=/jails/${id} ${origin} tank/cpc/sandboxes/${id}`,
    'ifconfig epair create',
    `ifconfig epair7a name cpc${id}a`,
    `ifconfig epair7b name cpc${id}b`,
    `ifconfig coppice0 addm cpc${id}a up`,
    `ifconfig coppice0 private cpc${id}a`,
    `ifconfig cpc${id}a up`,
    `jail -i -c name=${j} path=/jails/${id} host.hostname=${id} persist vnet vnet.interface=cpc${id}b mount.devfs devfs_ruleset=4 allow.raw_sockets=0 enforce_statfs=2 exec.clean`,
    `jexec ${j} /sbin/ifconfig lo0 inet 127.0.0.1/8 up`,
    `jexec ${j} /sbin/ifconfig cpc${id}b inet ${ip}/24 up`,
    `jexec ${j} /sbin/route add default 10.78.0.1`,
    `rctl -a jail:${j}:memoryuse:deny=256M`,
    `rctl -a jail:${j}:maxproc:deny=100`,
    `rctl -a jail:${j}:pcpu:deny=150`,
  ];
}

function setup(script?: (r: RecordingRunner) => void, opts: { freezeRounds?: number } = {}) {
  const runner = new RecordingRunner();
  script?.(runner); // test-specific rules first: rules match in the order they were added
  runner.on('ifconfig epair create', { stdout: 'epair7a\n' });
  runner.on('jail -i -c', { stdout: '42\n' });
  const warnings: object[] = [];
  const backend = createFreebsdJailBackend({
    runner,
    dataset: 'tank/cpc',
    jailsDir: '/jails',
    epairSettleMs: 0,
    sleep: async () => undefined,
    now: () => new Date(NOW),
    freezeRounds: opts.freezeRounds,
    logger: { info: () => undefined, warn: (o) => warnings.push(o) },
  });
  return { runner, backend, warnings };
}

async function created(script?: (r: RecordingRunner) => void, opts?: { freezeRounds?: number }) {
  const s = setup(script, opts);
  const handle = await s.backend.create(spec);
  s.runner.clear();
  return { ...s, handle };
}

const snapRow = (sandbox: string, snap: string, deferred = 'off', tpl = 'base') =>
  `tank/cpc/sandboxes/${sandbox}@${snap}\t${deferred}\t${tpl}\t2026-01-01T00:00:00.000Z\t4096`;

describe('FreeBSD jail driver: create', () => {
  it('clones the template snapshot, wires an epair into the bridge, starts a vnet jail, sets its address, applies rctl limits', async () => {
    const { runner, backend } = setup();
    const h = await backend.create(spec);
    assert.deepEqual(runner.lines(), createPlan(ID, '10.78.0.2'));
    assert.equal(h.ip, '10.78.0.2');
    assert.equal(h.data.jid, 42);
    assert.equal(h.data.dataset, 'tank/cpc/sandboxes/abc0123456');
    assert.ok(backend.pool.isLive('10.78.0.2'));
  });

  it('when jail -c fails, undoes exactly the steps done in reverse order and releases the address', async () => {
    const { runner, backend } = setup((r) => r.fail('jail -i -c', 'jail: vnet: Operation not permitted'));
    await assert.rejects(backend.create(spec), (e: unknown) => {
      assert.ok(e instanceof CoppiceError);
      assert.equal(e.code, 'backend_failed');
      assert.match(e.message, /failed at step "jail"/);
      assert.match(e.message, /Operation not permitted/);
      return true;
    });
    const done = createPlan(ID, '10.78.0.2').slice(0, 8);
    assert.deepEqual(runner.lines(), [
      ...done,
      `jail -r ${J}`,
      `ifconfig cpc${ID}a destroy`,
      `zfs destroy -r tank/cpc/sandboxes/${ID}`,
    ]);
    assert.equal(backend.pool.inUse, 0);
  });

  it('when a limit cannot be applied, removes the rctl rules before removing the jail', async () => {
    const { runner, backend } = setup((r) => r.fail(`rctl -a jail:${J}:maxproc:deny=100`, 'rctl: racct disabled'));
    await assert.rejects(backend.create(spec), /failed at step "limits"/);
    assert.deepEqual(runner.lines().slice(-5), [
      `rctl -a jail:${J}:maxproc:deny=100`,
      `rctl -r jail:${J}`,
      `jail -r ${J}`,
      `ifconfig cpc${ID}a destroy`,
      `zfs destroy -r tank/cpc/sandboxes/${ID}`,
    ]);
    assert.equal(backend.pool.inUse, 0);
  });

  it('destroys the epair under its original name when renaming it fails', async () => {
    const { runner, backend } = setup((r) => r.fail('ifconfig epair7a name', 'ifconfig: SIOCSIFNAME: File exists'));
    await assert.rejects(backend.create(spec), /failed at step "epair"/);
    assert.deepEqual(runner.lines().slice(2), [
      `ifconfig epair7a name cpc${ID}a`,
      'ifconfig epair7a destroy',
      `zfs destroy -r tank/cpc/sandboxes/${ID}`,
    ]);
  });

  it('refuses with conflict, and destroys nothing, when the dataset already exists', async () => {
    const { runner, backend } = setup((r) => r.fail('zfs clone', "cannot create 'tank/cpc/sandboxes/abc0123456': dataset already exists"));
    await assert.rejects(backend.create(spec), (e: unknown) => e instanceof CoppiceError && e.code === 'conflict');
    assert.deepEqual(runner.lines(), [createPlan(ID, '10.78.0.2')[0]]);
    assert.equal(backend.pool.inUse, 0);
  });

  it('keeps the address quarantined when the rollback cannot remove the jail', async () => {
    const { backend, warnings } = setup((r) => {
      r.fail(`jexec ${J} /sbin/route`, 'route: writing to routing socket: Network is unreachable');
      r.fail(`jail -r ${J}`, 'jail: jail_remove: Device busy');
    });
    await assert.rejects(backend.create(spec), /failed at step "network".*rollback incomplete: jail, address/);
    assert.ok(backend.pool.isLive('10.78.0.2'));
    assert.equal(warnings.length, 1);
  });

  it('stops at the next step when aborted midway and rolls back what was done', async () => {
    const ac = new AbortController();
    const { runner, backend } = setup((r) => r.on('ifconfig epair create', () => (ac.abort(), { stdout: 'epair7a\n' })));
    await assert.rejects(backend.create(spec, ac.signal), /aborted at step "bridge"/);
    assert.deepEqual(runner.lines(), [
      ...createPlan(ID, '10.78.0.2').slice(0, 4),
      `ifconfig cpc${ID}a destroy`,
      `zfs destroy -r tank/cpc/sandboxes/${ID}`,
    ]);
    assert.equal(backend.pool.inUse, 0);
  });

  it('rejects a bad id or a non-jail template before running anything', async () => {
    const { runner, backend } = setup();
    await assert.rejects(backend.create({ ...spec, id: 'BAD id' }), (e: unknown) => e instanceof CoppiceError && e.field === 'id');
    await assert.rejects(backend.create({ ...spec, template: { ...template, backend: 'bhyve' } }), /not a jail template/);
    assert.deepEqual(runner.calls, []);
  });
});

describe('FreeBSD jail driver: snapshot and fork', () => {
  const SNAP = `tank/cpc/sandboxes/${ID}@snap-1`;
  const zfsSnapshot = `zfs snapshot -o coppice:template=base -o coppice:created=${NOW} ${SNAP}`;
  const listAll = 'zfs list -H -p -o name,defer_destroy,coppice:template,coppice:created,referenced -t snapshot -r tank/cpc/sandboxes';

  it('stops the processes, takes the zfs snapshot, continues them, and reports its size', async () => {
    const { runner, backend, handle } = await created((r) => r.on('zfs get -H -p -o value referenced', { stdout: '8192\n' }));
    const rec = await backend.snapshot(handle, 'snap-1');
    assert.deepEqual(runner.lines(), [
      'pkill -STOP -j 42', 'ps -o stat= -J 42', zfsSnapshot, 'pkill -CONT -j 42', `zfs get -H -p -o value referenced ${SNAP}`,
    ]);
    assert.deepEqual(rec, { snapshotID: 'snap-1', sandboxID: ID, template: 'base', backend: 'jail', createdAt: NOW, sizeBytes: 8192 });
  });

  it('snapshots a paused sandbox without stopping or continuing it', async () => {
    const { runner, backend, handle } = await created();
    await backend.pause(handle);
    runner.clear();
    await backend.snapshot(handle, 'snap-1');
    assert.deepEqual(runner.lines(), [zfsSnapshot, `zfs get -H -p -o value referenced ${SNAP}`]);
  });

  it('continues the processes even when zfs snapshot fails, and names an existing snapshot a conflict', async () => {
    const { runner, backend, handle } = await created((r) => r.fail('zfs snapshot', `cannot create snapshot '${SNAP}': dataset already exists`));
    await assert.rejects(backend.snapshot(handle, 'snap-1'), (e: unknown) => e instanceof CoppiceError && e.code === 'conflict');
    assert.deepEqual(runner.lines(), ['pkill -STOP -j 42', 'ps -o stat= -J 42', zfsSnapshot, 'pkill -CONT -j 42']);
  });

  it('forks: finds the snapshot, clones it for the new sandbox, then the same network/jail/limit steps', async () => {
    const { runner, backend } = setup((r) => r.on(listAll, { stdout: snapRow(ID, 'snap-1') + '\n' }));
    const rec = { snapshotID: 'snap-1', sandboxID: ID, template: 'base', backend: 'jail' as const, createdAt: NOW, sizeBytes: 0 };
    const h = await backend.forkFrom(rec, { ...spec, id: FORK });
    assert.deepEqual(runner.lines(), [listAll, ...createPlan(FORK, '10.78.0.2', SNAP)]);
    assert.equal(h.data.origin, SNAP);
  });

  it('answers not_found for a fork of an unknown or deleted snapshot and runs nothing else', async () => {
    const { runner, backend } = setup((r) => r.on(listAll, { stdout: snapRow(ID, 'snap-1', 'on') + '\n' }));
    await assert.rejects(
      backend.create({ ...spec, id: FORK, fromSnapshot: { snapshotID: 'snap-1' } }),
      (e: unknown) => e instanceof CoppiceError && e.code === 'not_found',
    );
    assert.deepEqual(runner.lines(), [listAll]);
    await backend.create({ ...spec, id: FORK }); // the id is free again
  });

  it('refuses to fork a snapshot into another template', async () => {
    const { backend } = setup((r) => r.on(listAll, { stdout: snapRow(ID, 'snap-1', 'off', 'python') + '\n' }));
    await assert.rejects(backend.create({ ...spec, id: FORK, fromSnapshot: { snapshotID: 'snap-1' } }), /belongs to template python/);
  });

  it('lists only live snapshots made by the driver', async () => {
    const foreign = 'tank/cpc/sandboxes/abc0123456@manual\toff\t-\t-\t1';
    const { backend } = setup((r) => r.on(listAll, { stdout: [snapRow(ID, 'snap-2'), snapRow(ID, 'gone', 'on'), foreign].join('\n') }));
    assert.deepEqual(await backend.listSnapshots(), [
      { snapshotID: 'snap-2', sandboxID: ID, template: 'base', backend: 'jail', createdAt: '2026-01-01T00:00:00.000Z', sizeBytes: 4096 },
    ]);
  });

  it('deletes a snapshot with a deferred destroy, then checks whether its source can be reaped', async () => {
    const { runner, backend } = setup((r) => {
      r.on(listAll, { stdout: snapRow(ID, 'snap-1') });
      r.on('zfs get -H -o value coppice:retired,origin', { stdout: '-\ntank/cpc/templates/base@base\n' });
    });
    await backend.deleteSnapshot('snap-1');
    assert.deepEqual(runner.lines(), [listAll, `zfs destroy -d ${SNAP}`, `zfs get -H -o value coppice:retired,origin tank/cpc/sandboxes/${ID}`]);
  });

  it('deleting an unknown snapshot is a no-op', async () => {
    const { runner, backend } = setup();
    await backend.deleteSnapshot('snap-9');
    assert.deepEqual(runner.lines(), [listAll]);
  });
});

describe('FreeBSD jail driver: destroy', () => {
  const teardownPlan = [
    `rctl -r jail:${J}`,
    `jail -r ${J}`,
    `ifconfig cpc${ID}a destroy`,
    `zfs list -H -o name -t snapshot -d 1 tank/cpc/sandboxes/${ID}`,
  ];

  it('removes rctl rules, the jail, the epair and the dataset, in that order, and releases the address', async () => {
    const { runner, backend, handle } = await created();
    await backend.destroy(handle);
    assert.deepEqual(runner.lines(), [...teardownPlan, `zfs destroy tank/cpc/sandboxes/${ID}`]);
    assert.equal(backend.pool.inUse, 0);
  });

  it('is idempotent: everything already gone is success', async () => {
    const { backend, handle, warnings } = await created((r) => {
      r.on('rctl -r', { code: 1, stderr: 'rctl: failed to remove rule: No such process' });
      r.on('jail -r', { code: 1, stderr: `jail: "${J}" not found` });
      r.on(`ifconfig cpc${ID}a destroy`, { code: 1, stderr: `ifconfig: interface cpc${ID}a does not exist` });
      r.on('zfs list -H -o name -t snapshot', { code: 1, stderr: `cannot open 'tank/cpc/sandboxes/${ID}': dataset does not exist` });
    });
    await backend.destroy(handle);
    await backend.destroy(handle);
    assert.deepEqual(warnings, []);
    assert.equal(backend.pool.inUse, 0);
  });

  it('retires, instead of destroying, a dataset whose snapshots outlive it', async () => {
    const { runner, backend, handle } = await created((r) => r.on('zfs list -H -o name -t snapshot', { stdout: `tank/cpc/sandboxes/${ID}@snap-1\n` }));
    await backend.destroy(handle);
    assert.deepEqual(runner.lines(), [
      ...teardownPlan,
      `zfs set canmount=noauto coppice:retired=on tank/cpc/sandboxes/${ID}`,
      `zfs unmount tank/cpc/sandboxes/${ID}`,
    ]);
  });

  it('reaps the retired source chain once the last fork of its deleted snapshot is destroyed', async () => {
    const { runner, backend } = setup((r) => {
      r.on(`zfs get -H -o value coppice:retired,origin tank/cpc/sandboxes/${ID}`, { stdout: 'on\ntank/cpc/sandboxes/src0000001@s0\n' });
      r.on('zfs get -H -o value coppice:retired,origin tank/cpc/sandboxes/src0000001', { stdout: 'on\ntank/cpc/templates/base@base\n' });
    });
    const fork: SandboxHandle = { id: FORK, backend: 'jail', template: 'base', ip: '10.78.0.9', data: { jid: 43, origin: `tank/cpc/sandboxes/${ID}@snap-1` } };
    await backend.destroy(fork);
    assert.deepEqual(runner.lines().slice(-5), [
      `zfs destroy tank/cpc/sandboxes/${FORK}`,
      `zfs get -H -o value coppice:retired,origin tank/cpc/sandboxes/${ID}`,
      `zfs destroy tank/cpc/sandboxes/${ID}`,
      'zfs get -H -o value coppice:retired,origin tank/cpc/sandboxes/src0000001',
      'zfs destroy tank/cpc/sandboxes/src0000001',
    ]);
  });

  it('carries on past a step that fails, logs what is left, and quarantines the address while the jail may live', async () => {
    const { runner, backend, handle, warnings } = await created((r) => r.on('jail -r', { code: 1, stderr: 'jail: jail_remove: Device busy' }));
    await backend.destroy(handle);
    assert.deepEqual(runner.lines(), [...teardownPlan, `zfs destroy tank/cpc/sandboxes/${ID}`]);
    assert.ok(backend.pool.isLive(handle.ip));
    assert.equal(warnings.length, 2); // quarantine + what was left
  });
});

describe('FreeBSD jail driver: listLive', () => {
  it('reads jls name jid and keeps only coppice jails, with the state this process knows', async () => {
    const { backend, handle } = await created((r) => r.on('jls name jid', { stdout: `web 1\n${J} 42\ncoppice-zzzzzzzzzz 50\ncoppice-bad 51\n\n` }));
    await backend.pause(handle);
    assert.deepEqual(await backend.listLive(), [
      { id: ID, state: 'paused' },
      { id: 'zzzzzzzzzz', state: 'running' }, // alive, not stopped by this process: re-adopted as running
    ]);
    await backend.resume(handle);
    assert.equal((await backend.listLive())[0].state, 'running');
  });
});
