// Snapshots and forks on the Linux jail backend: files as of the snapshot, independent afterwards.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

describe('snapshot and fork (jail, Linux)', () => {
  let gw: TestGateway;
  const created: string[] = [];
  const snapshots: string[] = [];
  before(async () => {
    gw = await startTestGateway();
  });
  after(async () => {
    for (const id of created) await gw.api('DELETE', `/sandboxes/${id}`);
    for (const s of snapshots) await gw.api('DELETE', `/snapshots/${s}`);
    await gw.close();
  });

  const create = async (body: object) => {
    const r = await gw.api('POST', '/sandboxes', body);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    created.push(r.body.sandboxID);
    return r.body as { sandboxID: string; ip: string; templateID: string; state: string };
  };
  const sh = async (id: string, cmd: string) => {
    const r = await gw.api('POST', `/sandboxes/${id}/exec`, { cmd, user: 'root' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body as { stdout: string; exitCode: number };
  };

  test('a sandbox made from a snapshot sees the snapshot, the source its later change; both independent', async () => {
    const src = await create({ templateID: 'busybox', envVars: { WHO: 'src' } });
    await sh(src.sandboxID, 'mkdir -p /data && echo v1 > /data/file && rm /etc/motd 2>/dev/null; echo kept > /root/kept');
    const snap = await gw.api('POST', `/sandboxes/${src.sandboxID}/snapshot`);
    assert.equal(snap.status, 201, JSON.stringify(snap.body));
    assert.match(snap.body.snapshotID, /^snap-[a-z0-9]{10}$/);
    assert.equal(snap.body.sandboxID, src.sandboxID);
    assert.equal(snap.body.template, 'busybox');
    snapshots.push(snap.body.snapshotID);
    const listed = await gw.api('GET', '/snapshots');
    assert.ok(listed.body.some((s: { snapshotID: string }) => s.snapshotID === snap.body.snapshotID));

    await sh(src.sandboxID, 'echo v2 > /data/file');
    const fork = await create({ snapshotID: snap.body.snapshotID });
    assert.equal(fork.templateID, 'busybox');
    assert.notEqual(fork.ip, src.ip);
    assert.equal((await sh(fork.sandboxID, 'cat /data/file /root/kept')).stdout, 'v1\nkept\n');
    assert.equal((await sh(src.sandboxID, 'cat /data/file')).stdout, 'v2\n');
    // Its own identity: hostname resolves to its own address.
    assert.equal((await sh(fork.sandboxID, 'grep -c "$(hostname)" /etc/hosts; hostname')).stdout, `1\n${fork.sandboxID}\n`);

    // Independent afterwards, and alive after the source is gone.
    await sh(fork.sandboxID, 'echo fork-only > /data/other');
    assert.equal((await sh(src.sandboxID, 'test -e /data/other; echo $?')).stdout, '1\n');
    assert.equal((await gw.api('DELETE', `/sandboxes/${src.sandboxID}`)).status, 204);
    assert.equal((await sh(fork.sandboxID, 'cat /data/file /data/other')).stdout, 'v1\nfork-only\n');

    // The snapshot outlives its source; deleting it is 204 then 404.
    assert.equal((await gw.api('DELETE', `/snapshots/${snap.body.snapshotID}`)).status, 204);
    assert.equal((await gw.api('DELETE', `/snapshots/${snap.body.snapshotID}`)).status, 404);
    assert.equal((await gw.api('POST', '/sandboxes', { snapshotID: snap.body.snapshotID })).status, 404);
    assert.deepEqual(await findLeftovers([src.sandboxID], { stateDir: gw.stateDir }), []);
  });

  test('fork copies the current files and settings; the source keeps running', async () => {
    const src = await create({ templateID: 'busybox', envVars: { WHO: 'src' }, metadata: { team: 'a' } });
    await sh(src.sandboxID, 'echo now > /tmp/state');
    const r = await gw.api('POST', `/sandboxes/${src.sandboxID}/fork`, { metadata: { team: 'b' } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    created.push(r.body.sandboxID);
    assert.deepEqual(r.body.metadata, { team: 'b' });
    assert.equal((await sh(r.body.sandboxID, 'cat /tmp/state; echo $WHO')).stdout, 'now\nsrc\n');
    assert.equal((await gw.api('GET', `/sandboxes/${src.sandboxID}`)).body.state, 'running');
    // The fork's temporary snapshot is used up.
    const listed = await gw.api('GET', '/snapshots');
    assert.ok(!listed.body.some((s: { sandboxID: string }) => s.sandboxID === src.sandboxID));
  });

  test('a paused sandbox can be snapshotted and stays paused', async () => {
    const src = await create({ templateID: 'busybox' });
    assert.equal((await gw.api('POST', `/sandboxes/${src.sandboxID}/pause`)).status, 204);
    const snap = await gw.api('POST', `/sandboxes/${src.sandboxID}/snapshot`);
    assert.equal(snap.status, 201);
    snapshots.push(snap.body.snapshotID);
    assert.equal((await gw.api('GET', `/sandboxes/${src.sandboxID}`)).body.state, 'paused');
  });

  test('a symlink planted in the snapshot never makes the host write through it', async () => {
    const canaryDir = mkdtempSync(join(tmpdir(), 'coppice-canary-'));
    const canary = join(canaryDir, 'host-file');
    writeFileSync(canary, 'host content\n');
    try {
      const src = await create({ templateID: 'busybox' });
      await sh(src.sandboxID, `rm -f /etc/hosts && ln -s ${canary} /etc/hosts`);
      const snap = await gw.api('POST', `/sandboxes/${src.sandboxID}/snapshot`);
      snapshots.push(snap.body.snapshotID);
      const fork = await create({ snapshotID: snap.body.snapshotID });
      assert.equal(readFileSync(canary, 'utf8'), 'host content\n', 'host file untouched');
      assert.match((await sh(fork.sandboxID, 'cat /etc/hosts')).stdout, new RegExp(`${fork.ip.replace(/\./g, '\\.')}\\t${fork.sandboxID}`));
    } finally {
      rmSync(canaryDir, { recursive: true, force: true });
    }
  });

  test('bad snapshot input: unknown id 404, malformed 400, template mismatch 400', async () => {
    assert.equal((await gw.api('POST', '/sandboxes', { snapshotID: 'snap-zzzzzzzzzz' })).status, 404);
    const bad = await gw.api('POST', '/sandboxes', { snapshotID: '../../etc' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.field, 'snapshotID');
    const src = await create({ templateID: 'busybox' });
    const snap = await gw.api('POST', `/sandboxes/${src.sandboxID}/snapshot`);
    snapshots.push(snap.body.snapshotID);
    const mismatch = await gw.api('POST', '/sandboxes', { snapshotID: snap.body.snapshotID, templateID: 'base' });
    assert.equal(mismatch.status, 400);
    assert.equal((await gw.api('POST', '/sandboxes/zzzzzzzzzz/snapshot')).status, 404);
  });
});
