// Faults, each ending in a clear error, a consistent state and no leaked resource:
//   - runc failing at each step of create (hooks.beforeStep throws at every CreateStep; and a runc
//     wrapper that really fails `runc create` / `runc start`): 502 backend_failed naming the step,
//     nothing left on the host (findLeftovers), no address held, the gateway keeps serving;
//   - a container that vanishes behind the gateway's back: pause/exec/snapshot answer 502, never
//     hang or take the process down; DELETE still cleans up;
//   - a full disk while copying a snapshot (the snapshot store on a 2 MiB tmpfs): 502, no partial
//     snapshot dir, the source sandbox running (not left frozen), GET /snapshots unaffected;
//   - SSH dropping mid-stream (the bhyve exec shim against a real sshd on loopback, behind a TCP
//     proxy the test cuts): the exec fails clearly, the remote command does not linger, the next
//     exec reconnects;
//   - a client vanishing mid-upload (REST exec body cut halfway; a WebSocket exec client gone
//     mid-stdin): no crash, no error log, no leak, the sandbox still works, the command can be
//     re-attached.
// (pool-ctl misbehaving is covered in bhyve-backend.test.ts.) Needs root. Loopback only.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GuestConnection } from '../../src/backends/bhyve/ssh.ts';
import { findLeftovers, type CreateStep } from '../../src/backends/jail/linux/index.ts';
import { sandboxNames } from '../../src/backends/jail/linux/names.ts';
import { Runc } from '../../src/backends/jail/linux/runc.ts';
import { teardown } from '../../src/backends/jail/linux/teardown.ts';
import type { ExecProcess } from '../../src/backends/types.ts';
import { CoppiceError } from '../../src/errors.ts';
import { openFds, sleep, startJailApp, type JailApp } from '../helpers/jail-app.ts';
import { startLocalSshd, startProxy, type CuttableProxy, type LocalSshd } from '../helpers/local-sshd.ts';
import { ExecWsClient } from '../helpers/ws-exec-client.ts';

const root = process.getuid?.() === 0;
const skip = root ? false : 'needs root (runc sandboxes, mounts, sshd)';

const STEPS: CreateStep[] = ['address', 'dir', 'snapshot', 'overlay', 'netns', 'netns-inside', 'config', 'runc-create', 'runc-start'];
const freezerState = (id: string) => readFileSync(`/sys/fs/cgroup/freezer/coppice/${id}/freezer.state`, 'utf8').trim();

/** No error-level line in the gateway's log (500s, actor faults, "unhandled error"). */
function assertNoErrorLogs(g: JailApp, what: string): void {
  const errors = g.logs.filter((l) => l.level >= 50).map((l) => `${l.msg} ${JSON.stringify(l.err ?? '').slice(0, 200)}`);
  assert.deepEqual(errors, [], `error-level log lines after ${what}`);
}

async function execOk(g: JailApp, id: string, cmd = 'echo ok'): Promise<string> {
  const r = await g.api('POST', `/sandboxes/${id}/exec`, { cmd, user: 'root', timeoutMs: 20_000 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.exitCode, 0, JSON.stringify(r.body));
  return r.body.stdout;
}

describe('faults: runc failing at each step of create', { skip, timeout: 180_000 }, () => {
  let g: JailApp;
  let failAt: CreateStep | null = null;
  const stepsOf = new Map<string, CreateStep[]>(); // id -> steps reached
  const used = new Set<string>();
  const wrapperDir = mkdtempSync(join(tmpdir(), 'coppice-runc-wrap-'));
  const runcWrapper = join(wrapperDir, 'runc');
  let keep = ''; // a live sandbox through all of it (its address stays in use)
  let snapshotID = '';

  before(async () => {
    // A runc that fails `create` or `start` on demand (flag files), and is plain runc otherwise.
    writeFileSync(
      runcWrapper,
      `#!/bin/sh\nif [ -e "${wrapperDir}/fail-$1" ]; then echo "injected: runc $1 failed (exit 1)" >&2; exit 1; fi\nexec runc "$@"\n`,
    );
    chmodSync(runcWrapper, 0o755);
    g = await startJailApp({
      runc: runcWrapper,
      hooks: {
        beforeStep(step, id) {
          used.add(id);
          stepsOf.set(id, [...(stepsOf.get(id) ?? []), step]);
          if (step === failAt) throw new Error(`injected failure before step ${step}`);
        },
      },
    });
    const r = await g.api('POST', '/sandboxes', { templateID: 'busybox' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    keep = r.body.sandboxID;
    await execOk(g, keep, 'mkdir -p /data && echo from-snapshot > /data/f');
    const s = await g.api('POST', `/sandboxes/${keep}/snapshot`);
    assert.equal(s.status, 201, JSON.stringify(s.body));
    snapshotID = s.body.snapshotID;
  });

  after(async () => {
    failAt = null;
    if (snapshotID) await g?.api('DELETE', `/snapshots/${snapshotID}`);
    if (keep) await g?.api('DELETE', `/sandboxes/${keep}`);
    await g?.close();
    rmSync(wrapperDir, { recursive: true, force: true });
    assert.deepEqual(await findLeftovers([...used], { stateDir: g.stateDir }), [], 'leftovers after the suite');
  });

  /** Create expecting failure at `step`; returns the failed sandbox's id and the error message. */
  async function failingCreate(step: string, body: object): Promise<{ id: string; message: string }> {
    const before = new Set(used);
    const r = await g.api('POST', '/sandboxes', body);
    assert.equal(r.status, 502, `${step}: ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(r.body.code, 502);
    assert.equal(r.body.error, 'backend_failed');
    const id = [...used].find((x) => !before.has(x));
    assert.ok(id, 'the hook saw the failed create');
    assert.match(r.body.message, new RegExp(`create ${id} failed at step "${step}"`), r.body.message);
    return { id: id!, message: r.body.message };
  }

  async function assertCleanAfter(id: string, what: string): Promise<void> {
    // The sandbox's actor ends; nothing of it is listed or left on the host; only `keep` holds an address.
    for (let i = 0; i < 100 && g.app.gateway.actor.system.get(`sandbox:${id}`)?.getSnapshot().status === 'active'; i++) await sleep(20);
    assert.notEqual(g.app.gateway.actor.system.get(`sandbox:${id}`)?.getSnapshot().status, 'active', `${what}: actor ended`);
    assert.equal((await g.api('GET', `/sandboxes/${id}`)).status, 404);
    assert.deepEqual((await g.api('GET', '/sandboxes')).body.map((s: { sandboxID: string }) => s.sandboxID), [keep], what);
    assert.deepEqual(await findLeftovers([id], { stateDir: g.stateDir }), [], `${what}: leftovers`);
    assert.equal(g.backend.pool.inUse, 1, `${what}: addresses in use`);
    assert.equal(g.app.gateway.lifecycle, 'serving');
  }

  for (const step of STEPS) {
    test(`hook throws before "${step}": 502 naming the step, nothing leaked, still serving`, async () => {
      failAt = step;
      const body = step === 'snapshot' ? { snapshotID } : { templateID: 'busybox' };
      const { id, message } = await failingCreate(step, body);
      failAt = null;
      assert.match(message, new RegExp(`injected failure before step ${step}`));
      const reached = stepsOf.get(id)!;
      assert.equal(reached[reached.length - 1], step, `create stopped at ${step} (reached ${reached.join(' > ')})`);
      await assertCleanAfter(id, `failure at ${step}`);
    });
  }

  for (const sub of ['create', 'start'] as const) {
    test(`runc ${sub} itself fails: 502 with runc's message, container rolled back, nothing leaked`, async () => {
      const flag = join(wrapperDir, `fail-${sub}`);
      writeFileSync(flag, '');
      let failed: { id: string; message: string };
      try {
        failed = await failingCreate(`runc-${sub}`, { templateID: 'busybox' });
      } finally {
        rmSync(flag, { force: true });
      }
      // runc's own words reach the caller (from create.log for create, from stderr for start).
      assert.match(failed.message, new RegExp(`injected: runc ${sub} failed`), failed.message);
      await assertCleanAfter(failed.id, `runc ${sub} failure`);
    });
  }

  test('after all of it: normal creates work (also from the snapshot, which no failure touched)', async () => {
    const a = await g.api('POST', '/sandboxes', { snapshotID });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    used.add(a.body.sandboxID);
    assert.equal(await execOk(g, a.body.sandboxID, 'cat /data/f'), 'from-snapshot\n');
    assert.equal((await g.api('DELETE', `/sandboxes/${a.body.sandboxID}`)).status, 204);
    assert.deepEqual(await findLeftovers([...used].filter((x) => x !== keep), { stateDir: g.stateDir }), []);
    assert.equal(g.backend.pool.inUse, 1);
    assertNoErrorLogs(g, 'create failures');
  });

  test('a create failing while six others are destroyed concurrently: each outcome independent, nothing leaked', async () => {
    failAt = null;
    const results = await Promise.all(Array.from({ length: 6 }, () => g.api('POST', '/sandboxes', { templateID: 'busybox' })));
    const ok = results.filter((r) => r.status === 201).map((r) => r.body.sandboxID as string);
    ok.forEach((id) => used.add(id));
    assert.equal(ok.length, 6);
    failAt = 'netns-inside';
    const [bad, ...dels] = await Promise.all([g.api('POST', '/sandboxes', { templateID: 'busybox' }), ...ok.map((id) => g.api('DELETE', `/sandboxes/${id}`))]);
    failAt = null;
    assert.equal(bad!.status, 502, JSON.stringify(bad!.body));
    assert.match(bad!.body.message, /failed at step "netns-inside"/);
    for (const d of dels) assert.equal(d.status, 204);
    assert.deepEqual(await findLeftovers([...used].filter((x) => x !== keep), { stateDir: g.stateDir }), []);
    assert.equal(g.backend.pool.inUse, 1);
  });
});

describe('faults: a container that vanishes behind the gateway', { skip, timeout: 120_000 }, () => {
  let g: JailApp;
  const used: string[] = [];
  before(async () => {
    g = await startJailApp();
  });
  after(async () => {
    for (const id of used) await g?.api('DELETE', `/sandboxes/${id}`);
    await g?.close();
    assert.deepEqual(await findLeftovers(used, { stateDir: g.stateDir }), []);
  });

  test('pause, exec, snapshot answer 502 (no hang, no crash); DELETE still cleans up', async () => {
    const r = await g.api('POST', '/sandboxes', { templateID: 'busybox' });
    assert.equal(r.status, 201);
    const id = r.body.sandboxID as string;
    used.push(id);
    // What an operator's `runc delete --force` (or a crashed host object) does: everything of it goes.
    const t = await teardown(new Runc('runc'), sandboxNames(g.stateDir, id));
    assert.deepEqual(t.left, []);
    for (const [path, body] of [['/pause', undefined], ['/exec', { cmd: 'echo hi' }], ['/snapshot', undefined]] as const) {
      const t0 = performance.now();
      const res = await Promise.race([g.api('POST', `/sandboxes/${id}${path}`, body), sleep(20_000).then(() => null)]);
      assert.ok(res, `POST ${path} answered (within 20 s)`);
      assert.equal(res.status, 502, `POST ${path}: ${res.status} ${JSON.stringify(res.body)}`);
      assert.equal(res.body.code, 502);
      assert.equal(res.body.error, 'backend_failed');
      assert.ok(performance.now() - t0 < 10_000);
    }
    // A streaming exec on it: a clear end (an exit carrying the error, or a 45xx refusal), never a hang.
    const c = new ExecWsClient(g.url, id, g.key);
    await c.opened;
    c.send({ type: 'start', argv: ['echo', 'hi'] });
    const closed = await Promise.race([c.closed, sleep(15_000).then(() => null)]);
    assert.ok(closed, 'the WebSocket exec ended');
    const exit = c.messages.find((m) => m.type === 'exit') as { error?: { message: string } } | undefined;
    const error = c.messages.find((m) => m.type === 'error') as { code: number; message: string } | undefined;
    assert.ok((exit && exit.error) || (error && error.code >= 500 && closed.code === 4000 + error.code), JSON.stringify({ closed, messages: c.messages }));
    assert.equal(g.app.gateway.lifecycle, 'serving');
    assert.equal((await g.api('DELETE', `/sandboxes/${id}`)).status, 204);
    assert.deepEqual(await findLeftovers([id], { stateDir: g.stateDir }), []);
    assert.equal(g.backend.pool.inUse, 0);
    assert.deepEqual((await g.api('GET', '/snapshots')).body, [], 'no snapshot (partial or whole) was recorded');
  });

  test(
    'the errors behind those 502s are typed backend failures naming the sandbox (no "unhandled error")',
    async () => {
      const r = await g.api('POST', '/sandboxes', { templateID: 'busybox' });
      const id = r.body.sandboxID as string;
      used.push(id);
      await teardown(new Runc('runc'), sandboxNames(g.stateDir, id));
      const logsBefore = g.logs.length;
      const s = await g.api('POST', `/sandboxes/${id}/snapshot`);
      const p = await g.api('POST', `/sandboxes/${id}/pause`);
      await g.api('DELETE', `/sandboxes/${id}`);
      assert.match(s.body.message, new RegExp(`snapshot of ${id}`), s.body.message);
      assert.match(p.body.message, new RegExp(`pause ${id}`), p.body.message);
      assert.deepEqual(g.logs.slice(logsBefore).filter((l) => l.msg === 'unhandled error').map((l) => JSON.stringify(l.err).slice(0, 200)), []);
    },
  );
});

describe('faults: a full disk while copying a snapshot', { skip, timeout: 120_000 }, () => {
  let g: JailApp;
  let snapDir = '';
  let mounted = false;
  const used: string[] = [];

  before(async () => {
    g = await startJailApp();
    snapDir = join(g.stateDir, 'snapshots');
    mkdirSync(snapDir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'coppice-test-snapfull', snapDir]);
    mounted = true;
  });

  after(async () => {
    for (const id of used) await g?.api('DELETE', `/sandboxes/${id}`);
    if (mounted) {
      try {
        execFileSync('umount', [snapDir]);
      } catch {
        execFileSync('umount', ['-l', snapDir]);
      }
    }
    await g?.close();
    assert.deepEqual(await findLeftovers(used, { stateDir: g.stateDir }), []);
  });

  test('4 MB into a 2 MiB snapshot store: 502 no space, no partial dir, source running and thawed, listing unaffected', async () => {
    const r = await g.api('POST', '/sandboxes', { templateID: 'busybox' });
    assert.equal(r.status, 201);
    const id = r.body.sandboxID as string;
    used.push(id);
    await execOk(g, id, 'head -c 4000000 /dev/urandom > /big.bin && echo small > /small.txt && sync');
    // A command running through the snapshot must come out of it running (frozen only during the copy).
    const ticker = new ExecWsClient(g.url, id, g.key);
    await ticker.start({ type: 'start', cmd: 'i=0; while [ $i -lt 2000 ]; do echo $i; i=$((i+1)); sleep 0.05; done' });
    // Running for real (runc exec refuses to start in a container frozen before it got going).
    for (let i = 0; i < 100 && ticker.outBytes === 0; i++) await sleep(50);
    assert.ok(ticker.outBytes > 0, 'the ticker runs before the snapshot');

    const before = (await g.api('GET', '/snapshots')).body;
    const s = await g.api('POST', `/sandboxes/${id}/snapshot`);
    assert.equal(s.status, 502, JSON.stringify(s.body));
    assert.equal(s.body.error, 'backend_failed');
    assert.match(s.body.message, /No space left on device|ENOSPC/i, s.body.message);
    assert.match(s.body.message, new RegExp(id));

    assert.deepEqual(readdirSync(snapDir), [], 'no partial snapshot directory');
    assert.equal(freezerState(id), 'THAWED', 'the source is not left frozen');
    const view = await g.api('GET', `/sandboxes/${id}`);
    assert.equal(view.body.state, 'running');
    const seen = ticker.outBytes;
    await sleep(300);
    assert.ok(ticker.outBytes > seen, 'the running command kept producing output after the failed snapshot');
    assert.equal(await execOk(g, id, 'cat /small.txt'), 'small\n');
    const listed = await g.api('GET', '/snapshots');
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body, before);

    // Room again (the big file gone): the same sandbox snapshots fine into the same small store.
    await execOk(g, id, 'rm /big.bin');
    const ok = await g.api('POST', `/sandboxes/${id}/snapshot`);
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.deepEqual((await g.api('GET', '/snapshots')).body.map((x: { snapshotID: string }) => x.snapshotID), [ok.body.snapshotID]);
    assert.equal((await g.api('DELETE', `/snapshots/${ok.body.snapshotID}`)).status, 204);
    assert.deepEqual(readdirSync(snapDir), []);
    ticker.ws.close();
    assertNoErrorLogs(g, 'the full-disk snapshot');
  });

  test(
    'a listing while a snapshot is being copied neither fails nor removes the snapshot in progress',
    async () => {
      // This one needs room: the 2 MiB tmpfs goes, snapshots land in the state dir again.
      execFileSync('umount', [snapDir]);
      mounted = false;
      const r = await g.api('POST', '/sandboxes', { templateID: 'busybox' });
      assert.equal(r.status, 201);
      const id = r.body.sandboxID as string;
      used.push(id);
      // Many files make the copy take a while.
      await execOk(g, id, 'mkdir -p /many && cd /many && i=0; while [ $i -lt 3000 ]; do echo $i > f$i; i=$((i+1)); done; head -c 30000000 /dev/urandom > /big2');
      const snap = g.api('POST', `/sandboxes/${id}/snapshot`);
      let done = false;
      void snap.finally(() => (done = true));
      const statuses = new Set<number>();
      while (!done) {
        statuses.add((await g.api('GET', '/snapshots')).status);
        await sleep(10);
      }
      const s = await snap;
      if (s.status === 201) await g.api('DELETE', `/snapshots/${s.body.snapshotID}`);
      assert.deepEqual([...statuses], [200], 'every listing answered 200');
      assert.equal(s.status, 201, JSON.stringify(s.body));
    },
  );
});

describe('faults: SSH dropping mid-stream (bhyve exec shim, real sshd behind a cuttable proxy)', { skip, timeout: 120_000 }, () => {
  // The gateway-level bhyve path needs the Linux pool-ctl (bridges, netns guests, an image build):
  // covered by bhyve-gateway.test.ts / ssh-shim.test.ts. Here the shim itself, against a real
  // OpenSSH on loopback, with the TCP connection cut by a proxy the test controls.
  let sshd: LocalSshd;
  let proxy: CuttableProxy;
  let conn: GuestConnection;

  before(async () => {
    sshd = await startLocalSshd();
    proxy = await startProxy(sshd.port);
    // Short keepalive so a partition is noticed within the test's patience (production: 10 s x 12).
    conn = new GuestConnection({ host: '127.0.0.1', port: proxy.port, privateKey: sshd.privateKey, readyTimeoutMs: 5000, keepaliveIntervalMs: 1000, keepaliveCountMax: 3 });
    await conn.connect();
  });

  after(async () => {
    conn?.close();
    await proxy?.close();
    await sshd?.stop();
  });

  const collect = (p: ExecProcess) => {
    const out: Buffer[] = [];
    let ended = false;
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stdout.on('end', () => (ended = true));
    p.stderr.resume();
    return { text: () => Buffer.concat(out).toString(), ended: () => ended };
  };
  const lingering = (token: string) => {
    try {
      return execFileSync('pgrep', ['-f', token]).toString().trim();
    } catch {
      return ''; // pgrep exits 1 when nothing matches
    }
  };
  const lostClearly = (e: unknown) =>
    e instanceof CoppiceError && e.code === 'backend_failed' && /SSH connection lost before the command exited/.test(e.message);

  test('the connection is cut during a streaming exec: it fails clearly, streams end, the command does not linger; the next exec reconnects', async () => {
    const token = `coppice-fault-${randomBytes(4).toString('hex')}`;
    const p = conn.exec({ argv: ['sh', '-c', `i=0; while [ $i -lt 400 ]; do echo tick $i; i=$((i+1)); sleep 0.025; done; : ${token}`] });
    const c = collect(p);
    for (let i = 0; i < 200 && !c.text().includes('tick 5\n'); i++) await sleep(10);
    assert.match(c.text(), /tick 5\n/, 'output was streaming before the cut');
    const accepted = proxy.accepted;
    proxy.drop();
    const t0 = performance.now();
    await assert.rejects(p.exited, lostClearly);
    assert.ok(performance.now() - t0 < 2000, 'failed promptly');
    await sleep(50);
    assert.ok(c.ended(), 'stdout ended (no reader left hanging)');
    // sshd saw the connection die and ended the session: the command is gone within a few seconds.
    for (let i = 0; i < 60 && lingering(token); i++) await sleep(100);
    assert.equal(lingering(token), '', 'the remote command does not outlive the connection');

    const again = conn.exec({ argv: ['echo', 'back'] });
    const a = collect(again);
    assert.deepEqual(await again.exited, { exitCode: 0, signal: null });
    assert.equal(a.text(), 'back\n');
    assert.equal(proxy.accepted, accepted + 1, 'one new connection');
  });

  test('a cut with several execs and a stdin stream in flight fails them all clearly; five parallel execs then share one new connection', async () => {
    const ps = [
      conn.exec({ argv: ['sleep', '20'] }),
      conn.exec({ argv: ['sh', '-c', 'while :; do echo x; sleep 0.05; done'] }),
      conn.exec({ argv: ['cat'] }),
    ];
    ps.forEach((p) => collect(p));
    const cat = ps[2]!;
    cat.stdin.write(Buffer.alloc(100_000, 1));
    await sleep(300);
    proxy.drop();
    const results = await Promise.allSettled(ps.map((p) => p.exited));
    for (const r of results) assert.ok(r.status === 'rejected' && lostClearly(r.reason), JSON.stringify(r));
    // Writing to the dead exec's stdin neither throws nor hangs.
    cat.stdin.write(Buffer.alloc(10_000, 2));
    cat.stdin.end();

    const accepted = proxy.accepted;
    const rs = await Promise.all(Array.from({ length: 5 }, async (_, i) => {
      const p = conn.exec({ argv: ['echo', String(i)] });
      const c = collect(p);
      await p.exited;
      return c.text();
    }));
    assert.deepEqual(rs, ['0\n', '1\n', '2\n', '3\n', '4\n']);
    assert.equal(proxy.accepted, accepted + 1, 'one reconnect for all five');
  });

  test(
    'a connection that goes silent (no FIN, no RST) fails the exec in flight within a bounded time',
    async () => {
      const p = conn.exec({ argv: ['sh', '-c', 'while :; do echo x; sleep 0.05; done'] });
      collect(p);
      await sleep(300);
      proxy.blackhole();
      const outcome = await Promise.race([p.exited.then(() => 'exited', (e) => (lostClearly(e) ? 'lost' : `other: ${e}`)), sleep(25_000).then(() => 'hung')]);
      proxy.drop(); // unstick the test's own connection either way
      await p.exited.catch(() => undefined);
      assert.equal(outcome, 'lost');
    },
  );
});

describe('faults: a client vanishing mid-upload', { skip, timeout: 120_000 }, () => {
  let g: JailApp;
  let id = '';
  let fds0 = 0;

  before(async () => {
    g = await startJailApp();
    const r = await g.api('POST', '/sandboxes', { templateID: 'busybox' });
    assert.equal(r.status, 201);
    id = r.body.sandboxID;
    await execOk(g, id);
    g.dropIdleConnections();
    await sleep(200);
    fds0 = openFds();
  });

  after(async () => {
    if (id) await g?.api('DELETE', `/sandboxes/${id}`);
    await g?.close();
    if (id) assert.deepEqual(await findLeftovers([id], { stateDir: g.stateDir }), []);
  });

  /** Send the head of a request and part of its body on a raw socket, then vanish. */
  async function vanish(head: string, part: Buffer, how: 'reset' | 'fin'): Promise<void> {
    const port = Number(new URL(g.url).port);
    await new Promise<void>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.write(head);
        s.write(part, () => {
          setTimeout(() => {
            if (how === 'reset') s.resetAndDestroy();
            else s.end();
            setTimeout(resolve, 100);
          }, 50);
        });
      });
      s.on('error', () => undefined);
      s.on('data', () => undefined);
      setTimeout(() => reject(new Error('raw client stuck')), 10_000);
    });
  }

  test('POST /exec with a large body cut halfway (reset, FIN, chunked): no crash, no error log, nothing ran, the sandbox works', async () => {
    const processes0 = (await g.api('GET', `/sandboxes/${id}/processes`)).body.length;
    const payload = Buffer.from(JSON.stringify({ cmd: 'cat', stdin: 'A'.repeat(8_000_000) }));
    const auth = `Authorization: Bearer ${g.key}\r\nContent-Type: application/json\r\n`;
    await vanish(`POST /sandboxes/${id}/exec HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${payload.length}\r\n\r\n`, payload.subarray(0, 4_000_000), 'reset');
    await vanish(`POST /sandboxes/${id}/exec HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${payload.length}\r\n\r\n`, payload.subarray(0, 3_000_000), 'fin');
    const half = payload.subarray(0, 2_000_000);
    await vanish(`POST /sandboxes/${id}/exec HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\n`, Buffer.concat([Buffer.from(`${(half.length * 2).toString(16)}\r\n`), half]), 'reset');
    await sleep(300);
    assert.equal(g.app.gateway.lifecycle, 'serving');
    assertNoErrorLogs(g, 'vanished uploads');
    assert.equal((await g.api('GET', `/sandboxes/${id}/processes`)).body.length, processes0, 'no command started from a half body');
    assert.equal(await execOk(g, id, 'echo still here'), 'still here\n');
    // A full upload of the same size still works.
    const full = await g.api('POST', `/sandboxes/${id}/exec`, { cmd: 'wc -c', stdin: 'B'.repeat(3_000_000), user: 'root' });
    assert.equal(full.status, 200);
    assert.equal(full.body.stdout.trim(), '3000000');
  });

  test('a WebSocket exec client gone mid-stdin (abruptly, and mid-frame): the command keeps running, re-attach finishes it, nothing lost', async () => {
    // 1) cat with stdin open; 100 KB in, echoed; then the client vanishes without a close frame.
    const first = randomBytes(100_000);
    const c1 = new ExecWsClient(g.url, id, g.key);
    const pid = await c1.start({ type: 'start', argv: ['cat'], stdin: true });
    c1.send(first);
    for (let i = 0; i < 200 && c1.outBytes < first.length; i++) await sleep(10);
    assert.equal(c1.outBytes, first.length);
    c1.ws.terminate();
    await c1.closed;
    await sleep(100);
    const listed = (await g.api('GET', `/sandboxes/${id}/processes`)).body.find((p: { processID: string }) => p.processID === pid);
    assert.equal(listed?.state, 'running', 'still running after the client vanished');
    assert.equal(listed?.stdinOpen, true);

    // 2) A second client attaches from 0, sends the rest, closes stdin: the whole output, the exit.
    const rest = randomBytes(50_000);
    const c2 = new ExecWsClient(g.url, id, g.key);
    await c2.start({ type: 'attach', processID: pid, from: 0 });
    c2.send(rest);
    c2.send({ type: 'close_stdin' });
    const exit = await c2.exited;
    assert.equal(exit.exitCode, 0);
    assert.ok(c2.stdout().equals(Buffer.concat([first, rest])), 'every byte, in order, across the disconnect');

    // 3) Mid-frame: one complete 64 KiB frame, then a 4 MiB frame cut off on the wire.
    const c3 = new ExecWsClient(g.url, id, g.key);
    const pid3 = await c3.start({ type: 'start', argv: ['wc', '-c'], stdin: true });
    c3.send(Buffer.alloc(65_536, 7));
    await sleep(200);
    c3.ws.send(Buffer.alloc(4 * 1024 * 1024, 9));
    setImmediate(() => (c3.ws as unknown as { _socket: { resetAndDestroy(): void } })._socket.resetAndDestroy());
    await c3.closed;
    await sleep(200);
    const c4 = new ExecWsClient(g.url, id, g.key);
    await c4.start({ type: 'attach', processID: pid3 });
    c4.send({ type: 'close_stdin' });
    const exit4 = await c4.exited;
    assert.equal(exit4.exitCode, 0);
    assert.equal(c4.stdout().toString().trim(), '65536', 'the cut frame delivered nothing, the complete one everything');

    // 4) Gone mid-stdin and never back: the sandbox's destroy ends it (checked by the suite's after()).
    const c5 = new ExecWsClient(g.url, id, g.key);
    await c5.start({ type: 'start', argv: ['cat'], stdin: true });
    c5.send(Buffer.alloc(1000, 3));
    c5.ws.terminate();
    await c5.closed;

    assert.equal(g.app.gateway.lifecycle, 'serving');
    assertNoErrorLogs(g, 'vanished WebSocket clients');
    assert.equal(await execOk(g, id, 'echo fine'), 'fine\n');
    // Sockets of every vanished client are gone (the detached cat's runc exec still holds its pipes).
    g.dropIdleConnections();
    let fds = openFds();
    for (let i = 0; i < 40 && fds > fds0 + 8; i++) {
      await sleep(100);
      fds = openFds();
    }
    assert.ok(fds <= fds0 + 8, `open fds ${fds0} -> ${fds}`);
  });
});

// A guard for the test itself: the snapshot store is a tmpfs only inside its describe.
test('no test tmpfs left mounted', { skip }, () => {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  assert.ok(!mounts.includes('coppice-test-snapfull'), 'snapshot tmpfs unmounted');
});
