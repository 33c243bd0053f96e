// envd behaviour the E2B SDKs rely on beyond the common path (files, commands, watchers), with the
// pinned `e2b` SDK and, where the Python SDK's requests differ from the JS SDK's, the raw Connect
// requests it sends. Real gateway, real runc sandboxes; each test destroys what it created.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CommandExitError, Sandbox, SandboxNotFoundError, TimeoutError } from 'e2b';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
let opts: { apiKey: string; apiUrl: string; sandboxUrl: string };
const created = new Set<string>();

async function create(template = 'base'): Promise<Sandbox> {
  const sbx = await Sandbox.create(template, opts);
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

test('files: remove of a missing path succeeds; list is sorted by name; a symlink reports its target', async () => {
  const sbx = await create();
  try {
    await sbx.files.remove('/home/user/never-was');
    await sbx.files.remove('/home/user/no/such/dir');
    // A real permission problem is still an error.
    await assert.rejects(sbx.files.remove('/etc/passwd'), /permission denied/i);

    const names = ['m', 'c', 'zz', 'a', 'k', 'b', 'y', 'e', 'q', 'd'];
    await sbx.commands.run(`mkdir -p /home/user/sorted && cd /home/user/sorted && touch ${names.join(' ')} && mkdir f && touch f/2 f/1`);
    const flat = await sbx.files.list('/home/user/sorted');
    assert.deepEqual(flat.map((e) => e.name), [...names, 'f'].sort());
    const deep = await sbx.files.list('/home/user/sorted', { depth: 2 });
    const paths = deep.map((e) => e.path);
    assert.deepEqual(paths, [...paths].sort(), 'depth 2: in path order');
    assert.ok(paths.indexOf('/home/user/sorted/f/1') === paths.indexOf('/home/user/sorted/f') + 1, 'children right after their directory');

    await sbx.commands.run('cd /home/user && echo hi > target.txt && mkdir -p tdir && ln -s /home/user/target.txt abs-link && ln -s tdir rel-dir-link && ln -s gone dangling');
    const file = await sbx.files.getInfo('/home/user/abs-link');
    assert.equal(file.type, 'file', 'the target is a file');
    assert.equal(file.symlinkTarget, '/home/user/target.txt');
    const dir = await sbx.files.getInfo('/home/user/rel-dir-link');
    assert.equal(dir.type, 'dir', 'the target is a directory');
    assert.equal(dir.symlinkTarget, '/home/user/tdir', 'the target path is absolute');
    const dangling = await sbx.files.getInfo('/home/user/dangling');
    assert.equal(dangling.type, 'symlink', 'a dangling link has no target type');
    assert.equal(dangling.symlinkTarget, '/home/user/gone');
    const listed = await sbx.files.list('/home/user');
    assert.equal(listed.find((e) => e.name === 'rel-dir-link')?.type, 'dir', 'list reports links the same way');
    assert.equal(listed.find((e) => e.name === 'rel-dir-link')?.symlinkTarget, '/home/user/tdir');
  } finally {
    await destroy(sbx);
  }
});

test('commands: a relative cwd is relative to the user home; writing /0/x.txt creates the parents for the user', async () => {
  const sbx = await create();
  try {
    await sbx.files.makeDir('/home/user/work/sub');
    assert.equal((await sbx.commands.run('pwd', { cwd: 'work/sub' })).stdout, '/home/user/work/sub\n');
    assert.equal((await sbx.commands.run('pwd', { cwd: 'work', user: 'root' }).catch((e) => e)).stdout ?? '', '', 'root has no ~/work');
    await sbx.files.makeDir('/root/work', { user: 'root' });
    assert.equal((await sbx.commands.run('pwd', { cwd: 'work', user: 'root' })).stdout, '/root/work\n');

    // The default user writes where only root may create the directory (E2B's envd makes it).
    await sbx.files.write('/0/x.txt', 'zero');
    assert.equal(await sbx.files.read('/0/x.txt'), 'zero');
    assert.equal((await sbx.commands.run('stat -c %U /0 /0/x.txt')).stdout, 'user\nuser\n', 'the new parent belongs to the user');
    await sbx.files.write('/1/2/3/y.txt', 'deep');
    assert.equal((await sbx.commands.run('stat -c %U /1 /1/2 /1/2/3')).stdout, 'user\nuser\nuser\n');
    // A real permission problem is 403 (SandboxError "403: ..."), never 500.
    const denied = await sbx.files.write('/etc/passwd', 'x').catch((e: Error) => e);
    assert.match(String(denied), /403/);
    assert.doesNotMatch(String(denied), /500/);
  } finally {
    await destroy(sbx);
  }
});

test('files: without a way to root (busybox, no sudo) a parent the user may not create is 403 / permission_denied', async () => {
  const sbx = await create('busybox');
  try {
    const http = await sbx.files.write('/0/x.txt', 'zero').catch((e: Error) => e);
    assert.match(String(http), /403/);
    assert.match(String(http), /permission denied/i);
    // Connect: permission_denied (the SDK's generic SandboxError with that code), not internal.
    const rpc = await sbx.files.makeDir('/0/sub').catch((e: Error) => e);
    assert.match(String(rpc), /permission_denied/);
  } finally {
    await destroy(sbx);
  }
});

/** A Connect server-streaming call as the SDKs send it (JSON codec): its frames, parsed. */
async function connectStream(sandboxId: string, method: string, body: unknown, headers: Record<string, string> = {}) {
  const json = Buffer.from(JSON.stringify(body));
  const env = Buffer.alloc(5 + json.length);
  env.writeUInt8(0, 0);
  env.writeUInt32BE(json.length, 1);
  json.copy(env, 5);
  const res = await fetch(`${gw.url}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/connect+json', 'connect-protocol-version': '1', 'e2b-sandbox-id': sandboxId, 'x-api-key': gw.key, ...headers },
    body: env,
  });
  const buf = Buffer.from(await res.arrayBuffer());
  const frames: { flags: number; msg: any }[] = [];
  for (let at = 0; at + 5 <= buf.length; ) {
    const len = buf.readUInt32BE(at + 1);
    frames.push({ flags: buf[at]!, msg: JSON.parse(buf.subarray(at + 5, at + 5 + len).toString('utf8')) });
    at += 5 + len;
  }
  return { status: res.status, frames };
}

test("a command's deadline ends the stream with deadline_exceeded and no end event (the SDKs' timeout error)", async () => {
  const sbx = await create();
  try {
    const { status, frames } = await connectStream(
      sbx.sandboxId,
      'process.Process/Start',
      { process: { cmd: '/bin/bash', args: ['-l', '-c', 'echo before; sleep 30'] } },
      { 'connect-timeout-ms': '1500' },
    );
    assert.equal(status, 200);
    const last = frames.at(-1)!;
    assert.equal(last.flags & 2, 2, 'the last frame is the end of the stream');
    assert.equal(last.msg.error?.code, 'deadline_exceeded', `end frame ${JSON.stringify(last.msg)}`);
    const events = frames.slice(0, -1).map((f) => f.msg.event);
    assert.ok(events[0]?.start?.pid > 0, 'start first');
    assert.ok(!events.some((e) => e?.end), `no end event: ${JSON.stringify(events)}`);
    const ps = await sbx.commands.run('ps -eo args');
    assert.ok(!ps.stdout.includes('sleep 30'), 'the command was killed at its deadline');

    // Re-attaching (Connect) with a deadline: only the attach ends, the command keeps running.
    const bg = await sbx.commands.run('sleep 31', { background: true, timeoutMs: 0 });
    const attach = await connectStream(sbx.sandboxId, 'process.Process/Connect', { process: { pid: bg.pid } }, { 'connect-timeout-ms': '1000' });
    assert.equal(attach.frames.at(-1)!.msg.error?.code, 'deadline_exceeded');
    assert.ok((await sbx.commands.list()).some((p) => p.pid === bg.pid), 'still running after the attach timed out');
    await bg.kill();
  } finally {
    await destroy(sbx);
  }
});

test('killing the sandbox under a running command is the SDK timeout error (sandbox gone), not CommandExitError', async () => {
  const sbx = await create();
  const running = sbx.commands.run('echo started; sleep 60', { timeoutMs: 0 });
  const seen = running.catch((e: unknown) => e);
  // Wait until the command is really running (listed), then kill its sandbox.
  for (let i = 0; i < 200 && !(await sbx.commands.list()).some((p) => p.args.join(' ').includes('sleep 60')); i++) await new Promise((r) => setTimeout(r, 25));
  await destroy(sbx);
  const err = await seen;
  assert.ok(!(err instanceof CommandExitError), `not CommandExitError: ${String(err)}`);
  assert.ok(err instanceof TimeoutError || err instanceof SandboxNotFoundError, `the SDK's timeout / not-found class: ${String(err)}`);
});

/** A Connect unary call with the JSON codec, as the Python SDK sends it. */
async function unary(sandboxId: string, method: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${gw.url}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'connect-protocol-version': '1', 'e2b-sandbox-id': sandboxId, 'x-api-key': gw.key },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

test('polled watchers (Python sync watch_dir): CreateWatcher, GetWatcherEvents, RemoveWatcher', async () => {
  const sbx = await create();
  const other = await create();
  try {
    const dir = '/home/user/polled-watch-dir';
    await sbx.files.makeDir(dir);
    const c = await unary(sbx.sandboxId, 'filesystem.Filesystem/CreateWatcher', { path: dir, recursive: false });
    assert.equal(c.status, 200, JSON.stringify(c.body));
    const id = c.body.watcherId as string;
    assert.match(id, /^[0-9a-f]+$/);
    await sbx.files.write(`${dir}/new.txt`, '1');
    const seen: string[] = [];
    for (let i = 0; i < 200 && !seen.includes('EVENT_TYPE_CREATE new.txt'); i++) {
      const r = await unary(sbx.sandboxId, 'filesystem.Filesystem/GetWatcherEvents', { watcherId: id });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      for (const e of r.body.events ?? []) seen.push(`${e.type} ${e.name}`);
      if (!seen.includes('EVENT_TYPE_CREATE new.txt')) await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(seen.includes('EVENT_TYPE_CREATE new.txt'), JSON.stringify(seen));
    // Events are handed out once.
    const drained = await unary(sbx.sandboxId, 'filesystem.Filesystem/GetWatcherEvents', { watcherId: id });
    assert.ok(!(drained.body.events ?? []).some((e: { name: string; type: string }) => e.type === 'EVENT_TYPE_CREATE' && e.name === 'new.txt'));
    // A watcher belongs to its sandbox.
    assert.equal((await unary(other.sandboxId, 'filesystem.Filesystem/GetWatcherEvents', { watcherId: id })).body.code, 'not_found');
    assert.equal((await unary(other.sandboxId, 'filesystem.Filesystem/RemoveWatcher', { watcherId: id })).body.code, 'not_found');

    assert.ok((await sbx.commands.run('ps -eo args')).stdout.includes(dir), 'a helper polls the directory');
    assert.equal((await unary(sbx.sandboxId, 'filesystem.Filesystem/RemoveWatcher', { watcherId: id })).status, 200);
    assert.equal((await unary(sbx.sandboxId, 'filesystem.Filesystem/GetWatcherEvents', { watcherId: id })).body.code, 'not_found');
    // Its helper is gone from the sandbox (nothing left polling the directory).
    for (let i = 0; i < 100 && (await sbx.commands.run('ps -eo args')).stdout.includes(dir); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!(await sbx.commands.run('ps -eo args')).stdout.includes(dir), 'the watch helper was stopped');

    const missing = await unary(sbx.sandboxId, 'filesystem.Filesystem/CreateWatcher', { path: '/home/user/no-such-dir', recursive: false });
    assert.equal(missing.body.code, 'not_found');
  } finally {
    await destroy(sbx);
    await destroy(other);
  }
});

test('watchDir: a new file with content is a create and a write (as inotify reports it); an empty one only a create', async () => {
  const sbx = await create();
  try {
    await sbx.files.makeDir('/home/user/w');
    const events: string[] = [];
    const w = await sbx.files.watchDir('/home/user/w', (e) => void events.push(`${e.type} ${e.name}`));
    await sbx.files.write('/home/user/w/full.txt', 'content');
    await sbx.commands.run('touch /home/user/w/empty.txt');
    for (let i = 0; i < 300 && !(events.includes('write full.txt') && events.includes('create empty.txt')); i++) await new Promise((r) => setTimeout(r, 20));
    await w.stop();
    assert.ok(events.includes('create full.txt') && events.includes('write full.txt'), JSON.stringify(events));
    assert.ok(events.indexOf('create full.txt') < events.indexOf('write full.txt'), 'create first');
    assert.ok(events.includes('create empty.txt') && !events.includes('write empty.txt'), JSON.stringify(events));
  } finally {
    await destroy(sbx);
  }
});
