// The whole core walking end to end on Linux: REST -> actors -> runc sandboxes -> nothing left.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('gateway over REST with real runc sandboxes', () => {
  let gw: TestGateway;
  const created: string[] = [];
  before(async () => {
    gw = await startTestGateway();
  });
  after(async () => {
    for (const id of created) await gw.api('DELETE', `/sandboxes/${id}`);
    await gw.close();
  });

  const create = async (templateID: string, extra: object = {}) => {
    const r = await gw.api('POST', '/sandboxes', { templateID, ...extra });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    created.push(r.body.sandboxID);
    return r.body;
  };
  const exec = async (id: string, body: object) => {
    const r = await gw.api('POST', `/sandboxes/${id}/exec`, body);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body as { exitCode: number; stdout: string; stderr: string };
  };

  test('base sandbox: python answers 42, pause freezes it, resume thaws it, delete leaves nothing', async () => {
    const sbx = await create('base', { metadata: { owner: 'test' } });
    assert.match(sbx.sandboxID, /^[a-z0-9]{10}$/);
    assert.equal(sbx.templateID, 'base');
    assert.equal(sbx.backend, 'jail');
    assert.equal(sbx.state, 'running');
    assert.match(sbx.ip, /^10\.78\.0\.\d+$/);
    assert.ok(Date.parse(sbx.endAt) - Date.parse(sbx.startedAt) >= 299_000, 'default timeout is 300 s');

    const py = await exec(sbx.sandboxID, { argv: ['python3', '-c', 'print(6*7)'] });
    assert.equal(py.exitCode, 0);
    assert.equal(py.stdout, '42\n');

    // A counter in the background, detached from the exec that starts it.
    await exec(sbx.sandboxID, {
      cmd: 'nohup sh -c \'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.tmp; mv /tmp/counter.tmp /tmp/counter; sleep 0.02; done\' >/dev/null 2>&1 &',
    });
    await sleep(300);
    const read = async () => Number((await exec(sbx.sandboxID, { cmd: 'cat /tmp/counter' })).stdout);
    const before = await read();
    assert.ok(before > 0, 'counter runs');

    assert.equal((await gw.api('POST', `/sandboxes/${sbx.sandboxID}/pause`)).status, 204);
    const paused = await gw.api('GET', `/sandboxes/${sbx.sandboxID}`);
    assert.equal(paused.body.state, 'paused');
    assert.equal(paused.body.lifecycle, 'paused');
    await sleep(1000);
    assert.equal((await gw.api('POST', `/sandboxes/${sbx.sandboxID}/resume`)).status, 204);
    const justResumed = await read();
    // 1 s paused would have been ~50 increments if it ran; allow the few of the read itself.
    assert.ok(justResumed - before < 15, `no progress while paused (${before} -> ${justResumed})`);
    await sleep(600);
    const later = await read();
    assert.ok(later - justResumed >= 10, `progress after resume (${justResumed} -> ${later})`);

    assert.equal((await gw.api('DELETE', `/sandboxes/${sbx.sandboxID}`)).status, 204);
    assert.equal((await gw.api('GET', `/sandboxes/${sbx.sandboxID}`)).status, 404);
    assert.deepEqual(await findLeftovers([sbx.sandboxID], { stateDir: gw.stateDir }), []);
  });

  test('20 concurrent creates: 20 distinct addresses, each answers exec, none left after delete', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, () => gw.api('POST', '/sandboxes', { templateID: 'busybox' })),
    );
    for (const r of results) {
      assert.equal(r.status, 201, JSON.stringify(r.body));
      created.push(r.body.sandboxID);
    }
    const ids = results.map((r) => r.body.sandboxID as string);
    const ips = new Set(results.map((r) => r.body.ip as string));
    assert.equal(ips.size, 20);
    const outs = await Promise.all(results.map((r) => exec(r.body.sandboxID, { cmd: 'ip -4 -o addr show eth0' })));
    outs.forEach((o, i) => assert.ok(o.stdout.includes(`${results[i]!.body.ip}/`), o.stdout));
    const listed = await gw.api('GET', '/sandboxes');
    for (const id of ids) assert.ok(listed.body.some((s: { sandboxID: string }) => s.sandboxID === id));
    const deleted = await Promise.all(ids.map((id) => gw.api('DELETE', `/sandboxes/${id}`)));
    assert.ok(deleted.every((d) => d.status === 204));
    assert.deepEqual(await findLeftovers(ids, { stateDir: gw.stateDir }), []);
  });

  test('exec reports exit codes, stderr, env, cwd, user and stdin', async () => {
    const sbx = await create('busybox', { envVars: { FROM_SANDBOX: 'yes' } });
    const r = await exec(sbx.sandboxID, {
      cmd: 'echo "$FROM_SANDBOX $FROM_CALL $(pwd) $(id -un)"; echo oops >&2; exit 3',
      env: { FROM_CALL: 'also' },
      cwd: '/tmp',
      user: 'root',
    });
    assert.equal(r.exitCode, 3);
    assert.equal(r.stdout, 'yes also /tmp root\n');
    assert.equal(r.stderr, 'oops\n');
    const cat = await exec(sbx.sandboxID, { argv: ['cat'], stdin: 'from stdin' });
    assert.equal(cat.stdout, 'from stdin');
    const argv = await exec(sbx.sandboxID, { argv: ['printf', '%s|', 'a b', "it's", '$(x)', ''] });
    assert.equal(argv.stdout, "a b|it's|$(x)||");
    const killed = await gw.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { cmd: 'sleep 30', timeoutMs: 300 });
    assert.equal(killed.body.reason, 'timeout');
    assert.equal(killed.body.exitCode, null);
  });

  test('limits from the request land in the sandbox cgroups', async () => {
    const sbx = await create('busybox', { limits: { memoryMiB: 96, pids: 64, cpus: 0.5 } });
    assert.deepEqual(sbx.limits, { memoryMiB: 96, pids: 64, cpus: 0.5 });
    // Fork more than 64 processes: the pids limit must stop it.
    const r = await exec(sbx.sandboxID, {
      cmd: 'for i in $(seq 1 80); do sleep 5 </dev/null >/dev/null 2>&1 & done 2>/dev/null; n=$(jobs -p | wc -l); kill $(jobs -p); echo $n',
    });
    assert.ok(Number(r.stdout.trim()) < 64, `pids limited: ${r.stdout}`);
  });

  test('timeout: a sandbox expires at endAt and its own machine destroys it; /timeout and /connect move endAt', async () => {
    const sbx = await create('busybox', { timeout: 1 });
    assert.equal((await gw.api('POST', `/sandboxes/${sbx.sandboxID}/timeout`, { timeout: 2 })).status, 204);
    const moved = await gw.api('GET', `/sandboxes/${sbx.sandboxID}`);
    assert.ok(Date.parse(moved.body.endAt) > Date.parse(sbx.endAt));
    const conn = await gw.api('POST', `/sandboxes/${sbx.sandboxID}/connect`, { timeout: 1 });
    assert.equal(conn.status, 200, 'connect on a running sandbox: 200');
    assert.equal(conn.body.endAt, moved.body.endAt, 'connect never shortens');
    await sleep(2600);
    assert.equal((await gw.api('GET', `/sandboxes/${sbx.sandboxID}`)).status, 404);
    assert.deepEqual(await findLeftovers([sbx.sandboxID], { stateDir: gw.stateDir }), []);
  });

  test('connect resumes a paused sandbox (201) and the sandbox runs again', async () => {
    const sbx = await create('busybox');
    assert.equal((await gw.api('POST', `/sandboxes/${sbx.sandboxID}/pause`)).status, 204);
    const conn = await gw.api('POST', `/sandboxes/${sbx.sandboxID}/connect`, { timeout: 60 });
    assert.equal(conn.status, 201);
    assert.equal(conn.body.state, 'running');
    assert.equal((await exec(sbx.sandboxID, { cmd: 'echo back' })).stdout, 'back\n');
  });

  test('templates: listed with backend; reload picks up nothing new without touching sandboxes', async () => {
    const sbx = await create('busybox');
    const t = await gw.api('GET', '/templates');
    assert.equal(t.status, 200);
    assert.ok(t.body.some((x: { name: string; backend: string }) => x.name === 'base' && x.backend === 'jail'));
    const r = await gw.api('POST', '/templates/reload');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.templates, t.body);
    assert.equal((await exec(sbx.sandboxID, { cmd: 'echo still' })).stdout, 'still\n');
  });

  test('metrics expose sandboxes by state, create/exec histograms and request counts', async () => {
    await create('busybox');
    const m = await gw.api('GET', '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.body, /coppice_sandboxes\{state="running",backend="jail"\} [1-9]/);
    assert.match(m.body, /coppice_sandbox_create_seconds_count\{backend="jail",outcome="ok"\} [1-9]/);
    assert.match(m.body, /coppice_exec_seconds_count\{backend="jail"\} [1-9]/);
    assert.match(m.body, /coppice_http_requests_total\{method="POST",route="\/sandboxes",status="201"\} [1-9]/);
  });
});
