// The gateway's own disk full (issue 13 item 5): the state dir is a small tmpfs made by the test,
// filled up with a filler file. No sandbox actor dies, exec in a live sandbox keeps working,
// creates are refused with 507 insufficient_storage, everything works again once space returns,
// and a SIGINT drain while the disk is full leaves nothing behind (leak check by id, exact zero).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLinuxJailBackend, findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { startChildGateway, waitHealthy, type ChildGateway } from '../helpers/child-gateway.ts';
import { TEMPLATES_ROOT } from '../helpers/gateway.ts';

const skip = process.getuid?.() !== 0 ? 'needs root' : !existsSync(join(TEMPLATES_ROOT, 'busybox-template')) ? 'no busybox template' : false;

/** Write zeros until the filesystem says ENOSPC (dd exits non-zero then: expected). */
function fill(file: string): void {
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M'], { stdio: 'ignore' });
  } catch {
    /* ENOSPC is the point */
  }
}

describe('state disk full (tmpfs state dir)', { skip }, () => {
  let mountPoint: string;
  let c: ChildGateway;
  const ids: string[] = [];
  let mounted = false;

  before(async () => {
    mountPoint = mkdtempSync(join(tmpdir(), 'coppice-fullstate-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m,mode=0711', 'tmpfs', mountPoint]);
    mounted = true;
    c = await startChildGateway(['--disk-mib', '16', '--drain-timeout', '20'], {}, mountPoint);
    await waitHealthy(c.url);
  });

  after(async () => {
    if (c && c.proc.exitCode === null && c.proc.signalCode === null) {
      c.proc.kill('SIGKILL');
      await c.exit;
    }
    rmSync(join(mountPoint, 'filler'), { force: true });
    // Whatever a failed assertion left, removed by id.
    if (ids.length > 0 && (await findLeftovers(ids, { stateDir: mountPoint })).length > 0) {
      const backend = await createLinuxJailBackend({ stateDir: mountPoint });
      for (const id of ids) await backend.destroy({ id, backend: 'jail', template: 'busybox', ip: '10.78.0.250', data: {} }).catch(() => undefined);
      await backend.close();
    }
    if (mounted) execFileSync('umount', [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });

  const create = () => c.api('POST', '/sandboxes', { templateID: 'busybox' });
  const exec = async (id: string, cmd: string) => {
    const r = await c.api('POST', `/sandboxes/${id}/exec`, { cmd });
    return { status: r.status, body: (await r.json()) as { stdout?: string; exitCode?: number; message?: string } };
  };

  it('refuses creates with 507, keeps live sandboxes working, recovers, and drains clean', async () => {
    const r0 = await create();
    assert.equal(r0.status, 201, await r0.clone().text());
    const a = ((await r0.json()) as { sandboxID: string }).sandboxID;
    ids.push(a);
    // endAt on disk: the timeout change below moves it ~10 min later (default TTL 300 s).
    const recordEndAt = () => (JSON.parse(readFileSync(join(mountPoint, 'records', `${a}.json`), 'utf8')) as { endAt: number }).endAt;
    const extended = () => recordEndAt() > Date.now() + 600_000;

    fill(join(mountPoint, 'filler'));

    // A create is refused clearly, not a 500/502.
    const refused = await create();
    const body = (await refused.json()) as { error: string; message: string; sandboxID?: string };
    if (body.sandboxID) ids.push(body.sandboxID);
    assert.equal(refused.status, 507, JSON.stringify(body));
    assert.equal(body.error, 'insufficient_storage');

    // The live sandbox: a record write (timeout change) fails underneath, the actor survives it.
    const t = await c.api('POST', `/sandboxes/${a}/timeout`, { timeout: 900 });
    assert.equal(t.status, 204, await t.text());
    assert.equal(extended(), false, 'the record write really failed');
    assert.equal((await c.api('GET', `/sandboxes/${a}`)).status, 200);
    // exec needs nothing on the state disk.
    const e = await exec(a, 'echo still-here');
    assert.equal(e.status, 200, JSON.stringify(e.body));
    assert.equal(e.body.stdout, 'still-here\n', JSON.stringify(e.body));
    assert.equal((await c.api('GET', `/sandboxes/${a}`)).status, 200);

    // Space returns: creates work again, and the record that could not be written is on disk.
    rmSync(join(mountPoint, 'filler'));
    const r1 = await create();
    assert.equal(r1.status, 201, await r1.clone().text());
    const b = ((await r1.json()) as { sandboxID: string }).sandboxID;
    ids.push(b);
    assert.equal((await exec(b, 'echo ok')).body.stdout, 'ok\n');
    // The timeout change the full disk refused reaches the record once it can (retried each second).
    for (let i = 0; i < 100 && !extended(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(extended(), true);
    assert.match(c.stderr(), /sandbox record not written; kept in memory, retrying/);

    // Full again, then SIGINT: everything is destroyed, nothing is left.
    fill(join(mountPoint, 'filler'));
    assert.equal((await exec(a, 'echo x')).status, 200);
    c.proc.kill('SIGINT');
    assert.equal(await c.exit, 0, c.stderr().slice(-2000));
    assert.deepEqual(await findLeftovers(ids, { stateDir: mountPoint }), []);
    assert.deepEqual(readdirSync(join(mountPoint, 'records')), []);
  });
});
