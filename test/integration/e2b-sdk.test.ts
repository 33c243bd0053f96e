// The official `e2b` SDK (pinned 2.51.0), unchanged, against an in-process gateway with real runc
// sandboxes: only apiKey/apiUrl/sandboxUrl point it at coppice. Each step asserts real results.
// Every test destroys what it created (and `after` sweeps whatever a failed test left).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CommandExitError, FileNotFoundError, Sandbox, SandboxNotFoundError, TimeoutError } from 'e2b';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
let opts: { apiKey: string; apiUrl: string; sandboxUrl: string };
const created = new Set<string>();

async function create(o: Parameters<typeof Sandbox.create>[1] = {}): Promise<Sandbox> {
  const sbx = await Sandbox.create('base', { ...opts, ...o });
  created.add(sbx.sandboxId);
  return sbx;
}

async function destroy(sbx: Sandbox): Promise<void> {
  await sbx.kill();
  created.delete(sbx.sandboxId);
}

before(async () => {
  gw = await startTestGateway();
  opts = { apiKey: gw.key, apiUrl: gw.url, sandboxUrl: gw.url };
});

after(async () => {
  for (const id of created) await Sandbox.kill(id, opts).catch(() => false);
  await gw?.close();
});

test('create, getInfo, envs, setTimeout, Sandbox.list (filters, pages), kill', async () => {
  const tag = `t${Date.now()}`;
  const a = await create({ metadata: { suite: tag, name: 'a' }, envs: { FROM_SANDBOX: 'sbx-env' } });
  const b = await create({ metadata: { suite: tag, name: 'b' } });

  const info = await a.getInfo();
  assert.equal(info.sandboxId, a.sandboxId);
  assert.equal(info.templateId, 'base');
  assert.equal(info.state, 'running');
  assert.deepEqual(info.metadata, { suite: tag, name: 'a' });
  assert.equal(info.envdVersion, '0.5.7');
  assert.ok(info.endAt.getTime() > info.startedAt.getTime());

  // The sandbox's envVars and the call's envs both reach the command.
  const env = await a.commands.run('echo "$FROM_SANDBOX $FROM_CALL"', { envs: { FROM_CALL: 'call-env' } });
  assert.equal(env.stdout, 'sbx-env call-env\n');

  // setTimeout moves endAt (it may shorten it).
  await a.setTimeout(3_600_000);
  const longer = (await a.getInfo()).endAt.getTime();
  assert.ok(Math.abs(longer - (Date.now() + 3_600_000)) < 10_000, `endAt ~ now + 1 h (got ${new Date(longer).toISOString()})`);
  await a.setTimeout(120_000);
  assert.ok((await a.getInfo()).endAt.getTime() < longer - 3_000_000, 'setTimeout shortened endAt');

  // Metadata filter + pagination (limit 1, X-Next-Token) through the SDK's paginator.
  const paginator = Sandbox.list({ ...opts, query: { metadata: { suite: tag } }, limit: 1 });
  const seen: string[] = [];
  let pages = 0;
  while (paginator.hasNext) {
    const items = await paginator.nextItems();
    pages += 1;
    for (const s of items) {
      assert.equal(s.metadata.suite, tag);
      assert.equal(s.state, 'running');
      seen.push(s.sandboxId);
    }
  }
  assert.deepEqual(seen.sort(), [a.sandboxId, b.sandboxId].sort());
  assert.ok(pages >= 2, `two sandboxes with limit 1 take two pages (took ${pages})`);
  const onlyB = await Sandbox.list({ ...opts, query: { metadata: { suite: tag, name: 'b' } } }).nextItems();
  assert.deepEqual(onlyB.map((s) => s.sandboxId), [b.sandboxId]);

  // kill: true once, then false; the sandbox is gone for every later call.
  await destroy(b);
  assert.equal(await Sandbox.kill(b.sandboxId, opts), false);
  await assert.rejects(Sandbox.getInfo(b.sandboxId, opts), SandboxNotFoundError);
  assert.equal(await b.isRunning(), false);
  await destroy(a);
});

test('commands: streaming stdout, CommandExitError, background with stdin, list, kill, reconnect, deadline', async () => {
  const sbx = await create();
  try {
    // onStdout receives output while the command still runs.
    const chunks: { at: number; data: string }[] = [];
    const t0 = Date.now();
    const r = await sbx.commands.run('echo first; sleep 1.5; echo second', { onStdout: (data) => void chunks.push({ at: Date.now(), data }) });
    const done = Date.now();
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'first\nsecond\n');
    const first = chunks.find((c) => c.data.includes('first'));
    assert.ok(first, 'got "first" through onStdout');
    assert.ok(done - first.at >= 1000, `"first" arrived ${first.at - t0} ms in, ${done - first.at} ms before the end`);

    // Commands run as the template's user, in its home.
    const who = await sbx.commands.run('id -un; pwd');
    assert.equal(who.stdout, 'user\n/home/user\n');
    assert.equal((await sbx.commands.run('id -un', { user: 'root' })).stdout, 'root\n');

    // A failing command raises CommandExitError with its exit code and output.
    await assert.rejects(sbx.commands.run('echo oops >&2; exit 3'), (err: unknown) => {
      assert.ok(err instanceof CommandExitError);
      assert.equal(err.exitCode, 3);
      assert.equal(err.stderr, 'oops\n');
      return true;
    });

    // Background command with stdin: its PID is the real in-sandbox PID.
    const out: string[] = [];
    const cat = await sbx.commands.run('echo "pid=$$"; exec cat', { background: true, stdin: true, onStdout: (d) => void out.push(d) });
    assert.ok(cat.pid > 1);
    const probe = await sbx.commands.run(`kill -0 ${cat.pid} && tr '\\0' ' ' < /proc/${cat.pid}/cmdline`);
    assert.match(probe.stdout, /^cat/);
    const listed = await sbx.commands.list();
    const mine = listed.find((p) => p.pid === cat.pid);
    assert.ok(mine, `commands.list has pid ${cat.pid}: ${JSON.stringify(listed)}`);
    assert.equal(mine.cmd, '/bin/bash');
    assert.deepEqual(mine.args, ['-l', '-c', 'echo "pid=$$"; exec cat']);

    await cat.sendStdin('hello through stdin\n');
    for (let i = 0; i < 100 && !out.join('').includes('hello through stdin'); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(out.join(''), `pid=${cat.pid}\nhello through stdin\n`);

    assert.equal(await cat.kill(), true);
    await assert.rejects(cat.wait(), (err: unknown) => err instanceof CommandExitError && err.exitCode === -1 && /killed/.test(err.error ?? ''));
    assert.ok(!(await sbx.commands.list()).some((p) => p.pid === cat.pid), 'killed command is no longer listed');
    assert.equal(await sbx.commands.kill(cat.pid), false, 'killing it again: not found');

    // closeStdin: EOF reaches the command.
    const wc = await sbx.commands.run('wc -c', { background: true, stdin: true });
    await wc.sendStdin('12345');
    await wc.closeStdin();
    assert.equal((await wc.wait()).stdout.trim(), '5');

    // A client that goes away does not kill the command; connect() by PID re-attaches.
    const sleeper = await sbx.commands.run('sleep 30', { background: true, timeoutMs: 0 });
    await sleeper.disconnect();
    await new Promise((r) => setTimeout(r, 200));
    assert.ok((await sbx.commands.list()).some((p) => p.pid === sleeper.pid), 'still running after disconnect');
    const again = await sbx.commands.connect(sleeper.pid);
    assert.equal(again.pid, sleeper.pid);
    assert.equal(await sbx.commands.kill(sleeper.pid), true);
    await assert.rejects(again.wait(), CommandExitError);

    // timeoutMs is the command's lifetime: killed at the deadline.
    await assert.rejects(sbx.commands.run('sleep 20', { timeoutMs: 1000 }), TimeoutError);
    const ps = await sbx.commands.run('ps -eo args');
    assert.ok(!ps.stdout.includes('sleep 20'), `the timed-out command was killed:\n${ps.stdout}`);
  } finally {
    await destroy(sbx);
  }
});

test('files: write/read/list/exists/makeDir/rename/remove, binary and streamed', async () => {
  const sbx = await create();
  try {
    const w = await sbx.files.write('/home/user/notes/a.txt', 'hello file');
    assert.deepEqual({ name: w.name, path: w.path, type: w.type }, { name: 'a.txt', path: '/home/user/notes/a.txt', type: 'file' });
    assert.equal(await sbx.files.read('/home/user/notes/a.txt'), 'hello file');
    // Written as the sandbox user, as E2B does.
    assert.equal((await sbx.commands.run('stat -c %U /home/user/notes/a.txt')).stdout, 'user\n');
    // Relative paths are relative to the user's home.
    assert.equal(await sbx.files.read('notes/a.txt'), 'hello file');

    // Every byte value survives both ways (multipart up, raw down).
    const bytes = new Uint8Array(256).map((_, i) => i);
    await sbx.files.write('/home/user/bin.dat', bytes.buffer);
    assert.deepEqual(Buffer.from(await sbx.files.read('/home/user/bin.dat', { format: 'bytes' })), Buffer.from(bytes));
    assert.equal((await sbx.commands.run('sha256sum /home/user/bin.dat | cut -c1-16')).stdout.length, 17);
    // A streamed upload (octet-stream) of a few MiB.
    const big = Buffer.alloc(3 * 1024 * 1024 + 7, 0x5a);
    await sbx.files.write('/home/user/big.dat', new Blob([big]).stream());
    assert.equal((await sbx.files.read('/home/user/big.dat', { format: 'bytes' })).length, big.length);
    // gzip-encoded upload, gzip-accepting download.
    await sbx.files.write('/home/user/gz.txt', 'squeezed '.repeat(1000), { gzip: true });
    assert.equal(await sbx.files.read('/home/user/gz.txt', { gzip: true }), 'squeezed '.repeat(1000));
    assert.equal(await sbx.files.read('/home/user/empty-not-yet').catch((e) => e.constructor.name), 'FileNotFoundError');
    await sbx.files.write('/home/user/empty', '');
    assert.equal(await sbx.files.read('/home/user/empty'), '');

    assert.equal(await sbx.files.exists('/home/user/notes/a.txt'), true);
    assert.equal(await sbx.files.exists('/home/user/nope'), false);
    const fi = await sbx.files.getInfo('/home/user/notes/a.txt');
    assert.equal(fi.type, 'file');
    assert.equal(fi.size, 10);
    assert.equal(fi.owner, 'user');
    assert.equal(fi.permissions, '-rw-r--r--');

    assert.equal(await sbx.files.makeDir('/home/user/d1/d2'), true);
    assert.equal(await sbx.files.makeDir('/home/user/d1/d2'), false, 'already exists');
    await sbx.files.write('/home/user/d1/d2/x.txt', 'x');

    const top = await sbx.files.list('/home/user');
    const names = top.map((e) => e.name);
    for (const n of ['notes', 'bin.dat', 'big.dat', 'd1']) assert.ok(names.includes(n), `${n} listed in ${names}`);
    assert.equal(top.find((e) => e.name === 'd1')?.type, 'dir');
    assert.equal(top.find((e) => e.name === 'bin.dat')?.size, 256);
    assert.ok(!names.includes('x.txt'), 'depth 1 by default');
    // Names with spaces, newlines or record-like text come back exactly.
    await sbx.commands.run(`mkdir -p "/home/user/odd dir" && cd "/home/user/odd dir" && touch "$(printf 'new\\nline')" '@@cpc0@@E81a4 1 644 a b 1 -rw x' ' lead'`);
    const odd = await sbx.files.list('/home/user/odd dir');
    assert.deepEqual(odd.map((e) => e.name).sort(), [' lead', '@@cpc0@@E81a4 1 644 a b 1 -rw x', 'new\nline']);
    assert.ok(odd.every((e) => e.path.startsWith('/home/user/odd dir/') && e.type === 'file'));
    const deep = await sbx.files.list('/home/user/d1', { depth: 2 });
    assert.deepEqual(deep.map((e) => e.path).sort(), ['/home/user/d1/d2', '/home/user/d1/d2/x.txt']);

    const moved = await sbx.files.rename('/home/user/notes/a.txt', '/home/user/moved/b.txt');
    assert.equal(moved.path, '/home/user/moved/b.txt');
    assert.equal(await sbx.files.exists('/home/user/notes/a.txt'), false);
    assert.equal(await sbx.files.read('/home/user/moved/b.txt'), 'hello file');

    await sbx.files.remove('/home/user/d1');
    assert.equal(await sbx.files.exists('/home/user/d1/d2/x.txt'), false);
    await sbx.files.remove('/home/user/d1'); // already gone: still a success, as E2B
    await assert.rejects(sbx.files.list('/home/user/nope'), FileNotFoundError);
    // Permissions are the sandbox's: the user cannot read root's files.
    await assert.rejects(sbx.files.read('/etc/shadow'), /permission denied/);
  } finally {
    await destroy(sbx);
  }
});

test('busybox template (no bash, busybox tools): commands and files work', async () => {
  const sbx = await Sandbox.create('busybox', opts);
  created.add(sbx.sandboxId);
  try {
    const r = await sbx.commands.run('echo "$0 $(id -un)"; ls /bin/bash 2>/dev/null || echo no-bash');
    assert.match(r.stdout, /user\nno-bash\n$/);
    await sbx.files.write('/home/user/x/y.txt', 'busy');
    assert.equal(await sbx.files.read('/home/user/x/y.txt'), 'busy');
    assert.deepEqual((await sbx.files.list('/home/user/x')).map((e) => [e.name, e.size, e.owner]), [['y.txt', 4, 'user']]);
    assert.equal((await sbx.files.rename('/home/user/x/y.txt', '/home/user/z.txt')).path, '/home/user/z.txt');
    await sbx.files.remove('/home/user/x');
    assert.equal(await sbx.files.exists('/home/user/x'), false);
  } finally {
    await destroy(sbx);
  }
});

test('pause, then Sandbox.connect: paused answers 502 (not running), files survive', async () => {
  const sbx = await create();
  try {
    await sbx.files.write('/home/user/before-pause.txt', 'still here');
    assert.equal(await sbx.pause(), true);
    assert.equal(await sbx.pause(), false, 'already paused');
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, opts)).state, 'paused');
    assert.equal(await sbx.isRunning(), false);
    const paused = await Sandbox.list({ ...opts, query: { state: ['paused'] } }).nextItems();
    assert.ok(paused.some((s) => s.sandboxId === sbx.sandboxId));

    const back = await Sandbox.connect(sbx.sandboxId, opts);
    assert.equal(await back.isRunning(), true);
    assert.equal((await back.getInfo()).state, 'running');
    assert.equal(await back.files.read('/home/user/before-pause.txt'), 'still here');
    assert.equal((await back.commands.run('cat /home/user/before-pause.txt')).stdout, 'still here');
    // Connecting to a running sandbox is fine too.
    await Sandbox.connect(sbx.sandboxId, opts);
    await assert.rejects(Sandbox.connect('zzzzzzzzzz', opts), SandboxNotFoundError);
  } finally {
    await destroy(sbx);
  }
});

test('watchDir reports creates, writes and removes', async () => {
  const sbx = await create();
  try {
    await sbx.files.makeDir('/home/user/watched');
    const events: string[] = [];
    const w = await sbx.files.watchDir('/home/user/watched', (e) => void events.push(`${e.type} ${e.name}`));
    await sbx.files.write('/home/user/watched/one.txt', '1');
    const until = async (want: string) => {
      for (let i = 0; i < 300 && !events.includes(want); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(events.includes(want), `${want} in ${JSON.stringify(events)}`);
    };
    await until('create one.txt');
    await sbx.commands.run('echo more >> /home/user/watched/one.txt');
    await until('write one.txt');
    await sbx.files.remove('/home/user/watched/one.txt');
    await until('remove one.txt');
    await w.stop();
  } finally {
    await destroy(sbx);
  }
});

test('SDK <= 2.50 forms and auth: /sandboxes create/connect carry envdVersion + token; envd needs the token', async () => {
  const created1 = await gw.api('POST', '/sandboxes', { templateID: 'base' }, { 'x-api-key': gw.key, authorization: '' });
  assert.equal(created1.status, 201);
  const id = created1.body.sandboxID as string;
  created.add(id);
  assert.equal(created1.body.envdVersion, '0.5.7');
  assert.equal(typeof created1.body.envdAccessToken, 'string');
  const c = await gw.api('POST', `/sandboxes/${id}/connect`, { timeout: 60 });
  assert.equal(c.status, 200);
  assert.equal(c.body.envdAccessToken, created1.body.envdAccessToken);
  const detail = await gw.api('GET', `/sandboxes/${id}`);
  assert.equal(detail.body.envdVersion, '0.5.7');
  // refreshes: keep alive for at least `duration`; never shortens.
  assert.equal((await gw.api('POST', `/sandboxes/${id}/refreshes`, { duration: 3600 })).status, 204);
  const endAt = Date.parse((await gw.api('GET', `/sandboxes/${id}`)).body.endAt);
  assert.ok(Math.abs(endAt - (Date.now() + 3_600_000)) < 10_000);
  assert.equal((await gw.api('POST', `/sandboxes/${id}/refreshes`, { duration: 5 })).status, 204);
  assert.equal(Date.parse((await gw.api('GET', `/sandboxes/${id}`)).body.endAt), endAt);

  // envd: no token -> 401; the right token -> 204; unknown sandbox -> 502.
  const health = (headers: Record<string, string>) => fetch(`${gw.url}/health`, { headers }).then((r) => r.status);
  assert.equal(await health({ 'e2b-sandbox-id': id }), 401);
  assert.equal(await health({ 'e2b-sandbox-id': id, 'x-access-token': 'wrong' }), 401);
  assert.equal(await health({ 'e2b-sandbox-id': id, 'x-access-token': created1.body.envdAccessToken }), 204);
  assert.equal(await health({ 'e2b-sandbox-id': 'zzzzzzzzzz', 'x-access-token': created1.body.envdAccessToken }), 502);

  // A wrong API key is an AuthenticationError for the SDK.
  await assert.rejects(Sandbox.create('base', { ...opts, apiKey: 'wrong' }), /Unauthorized/);
  // Options coppice cannot honour are refused, not ignored.
  await assert.rejects(Sandbox.create('base', { ...opts, lifecycle: { onTimeout: 'pause' } }), /autoPause/);
  await assert.rejects(Sandbox.create('no-such-template', opts), /404/);

  assert.equal(await Sandbox.kill(id, opts), true);
  created.delete(id);
});

test('getMetrics: one sample of the sandbox itself (its memory limit, its CPUs, its disk), CPU use measured', async () => {
  const sbx = await create();
  try {
    const idle = await sbx.getMetrics();
    assert.equal(idle.length, 1);
    const m = idle[0]!;
    assert.ok(m.timestamp instanceof Date && !Number.isNaN(m.timestamp.getTime()));
    assert.equal(m.memTotal, 512 * 1024 * 1024, 'the sandbox memory limit, not the host RAM');
    assert.ok(m.memUsed > 0 && m.memUsed <= m.memTotal, JSON.stringify(m));
    assert.equal(m.cpuCount, 1);
    assert.ok(m.diskTotal > 0 && m.diskUsed > 0 && m.diskUsed <= m.diskTotal, JSON.stringify(m));
    // A busy loop shows up (generous bound: the host may be loaded).
    const loop = await sbx.commands.run('while :; do :; done', { background: true });
    const busy = (await sbx.getMetrics())[0]!;
    assert.ok(busy.cpuUsedPct > 20, `cpuUsedPct ${busy.cpuUsedPct} with a busy loop`);
    await loop.kill();
  } finally {
    await destroy(sbx);
  }
});
