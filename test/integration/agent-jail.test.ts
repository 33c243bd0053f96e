// coppice-agent as the init of real jail sandboxes (runc, hardening on): execs go through it, it
// is PID 1, signals reach the process group, nothing inside can reach its channel, pause and
// snapshot work with it, a lost connection falls back to runc exec, and a gateway SIGKILLed and
// restarted execs through the agent again. Run under the host lock (see helpers/common rules).
//
// How a test tells the two exec paths apart without timing: the driver counts them
// (execCounts), and inside the sandbox a command the agent started has PPid 1 (the agent forked
// it), while one `runc exec` started has PPid 0 (its parent, runc, is outside the pid namespace).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient } from '../../src/backends/jail/linux/agent/index.ts';
import { DEFAULT_AGENT, createLinuxJailBackend, findLeftovers, type CreateStep, type LinuxJailBackend } from '../../src/backends/jail/linux/index.ts';
import type { ExecExit, ExecProcess, SandboxHandle, Template } from '../../src/backends/types.ts';
import { CoppiceError } from '../../src/errors.ts';
import { TEMPLATES_ROOT } from '../helpers/gateway.ts';
import { startChildGateway, waitHealthy, type ChildGateway } from '../helpers/child-gateway.ts';

const root = process.getuid?.() === 0;
const skip = !root ? 'needs root (runc, mounts, netns)' : !existsSync(DEFAULT_AGENT) ? `no ${DEFAULT_AGENT} (sh ops/agent/build.sh)` : false;
const REPO = new URL('../..', import.meta.url).pathname;
const BASE = join(TEMPLATES_ROOT, 'base-template');
const hasBase = existsSync(join(BASE, '.coppice-template'));
const limits = { memoryMiB: 128, cpus: 0.5, pids: 64 };

let stateDir: string;
let templatesRoot: string;
let template: Template;
let backend: LinuxJailBackend;
const backends: LinuxJailBackend[] = [];
const usedIds = new Set<string>();
const live = new Map<string, { b: LinuxJailBackend; h: SandboxHandle }>();
const warnings: { o: object; msg?: string }[] = [];
const failAt = new Map<string, CreateStep>();

function newId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let id = 'a';
  for (const b of randomBytes(9)) id += alphabet[b % alphabet.length];
  usedIds.add(id);
  return id;
}

async function makeBackend(agent: 'on' | 'off' | 'auto' = 'auto'): Promise<LinuxJailBackend> {
  const b = await createLinuxJailBackend({
    stateDir,
    agent,
    logger: { info: () => undefined, warn: (o, msg) => warnings.push({ o, msg }) },
    hooks: {
      beforeStep(step, id) {
        if (failAt.get(id) === step) throw new Error(`injected failure at ${step}`);
      },
    },
  });
  backends.push(b);
  return b;
}

async function create(b = backend, tpl = template): Promise<SandboxHandle> {
  const h = await b.create({ id: newId(), template: tpl, limits });
  live.set(h.id, { b, h });
  return h;
}

async function destroy(h: SandboxHandle, b = backend): Promise<void> {
  await b.destroy(h);
  live.delete(h.id);
}

interface Result {
  stdout: string;
  stderr: string;
  exit: ExecExit;
}

async function collect(p: ExecProcess, stdin?: string): Promise<Result> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  p.stdout.on('data', (c: Buffer) => out.push(c));
  p.stderr.on('data', (c: Buffer) => err.push(c));
  p.stdin.end(stdin);
  const exit = await p.exited;
  return { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), exit };
}

const run = (h: SandboxHandle, argv: string[], opts: { user?: string; cwd?: string; b?: LinuxJailBackend } = {}) =>
  collect((opts.b ?? backend).exec(h, { argv, user: opts.user ?? 'root', cwd: opts.cwd }));

/** PPid of a command inside the sandbox: 1 when the agent forked it, 0 when runc exec did. */
const ppid = async (h: SandboxHandle, b = backend) => (await run(h, ['sh', '-c', 'grep PPid /proc/$$/status'], { b })).stdout.trim();

const sockOf = (h: SandboxHandle) => join(stateDir, 'sandboxes', h.id, 'agent.sock');

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('coppice-agent as the jail init (real runc)', { skip }, () => {
  before(async () => {
    templatesRoot = mkdtempSync(join(tmpdir(), 'coppice-tpl-'));
    stateDir = mkdtempSync(join(tmpdir(), 'coppice-state-'));
    execFileSync(join(REPO, 'ops/templates/build-busybox.sh'), [templatesRoot], { stdio: 'ignore' });
    template = { name: 'busybox', path: join(templatesRoot, 'busybox-template'), backend: 'jail' };
    backend = await makeBackend();
  });

  after(async () => {
    for (const { b, h } of live.values()) await b.destroy(h);
    for (const b of backends) await b.close();
    const left = stateDir ? await findLeftovers([...usedIds], { stateDir }) : [];
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
    if (templatesRoot) rmSync(templatesRoot, { recursive: true, force: true });
    assert.deepEqual(left, [], 'leftovers after the suite');
  });

  describe('one sandbox', () => {
    let h: SandboxHandle;
    before(async () => {
      h = await create();
    });

    it('is on by default and connected; `true` runs through the agent, not runc exec', async () => {
      assert.equal(backend.agentEnabled, true);
      assert.equal(backend.agentState(h.id), 'connected');
      const before = { ...backend.execCounts };
      const r = await run(h, ['true']);
      assert.deepEqual(r.exit, { exitCode: 0, signal: null });
      assert.deepEqual(backend.execCounts, { agent: before.agent + 1, runc: before.runc });
      assert.equal(await ppid(h), 'PPid:\t1');
    });

    it('PID 1 is the agent (coppice-init), from a read-only bind', async () => {
      assert.equal((await run(h, ['cat', '/proc/1/comm'])).stdout, 'coppice-init\n');
      const w = await run(h, ['sh', '-c', 'echo x > /.coppice/agent']);
      assert.notEqual(w.exit.exitCode, 0, 'the agent binary must not be writable from inside');
      assert.ok(!existsSync(join(stateDir, 'sandboxes', h.id, 'rootfs', 'agent.sock')));
    });

    it('argv, env, cwd, user, supplementary groups and stdin pass as with runc exec', async () => {
      const weird = `a b'c"d$HOME\\;*`;
      const p = backend.exec(h, { argv: ['sh', '-c', 'printf "%s|%s|%s|%s|" "$1" "$FOO" "$(pwd)" "$HOME"; id -u; cat', 'sh', weird], env: { FOO: 'x y' }, cwd: '/tmp' });
      const r = await collect(p, 'in\n');
      assert.equal(r.stdout, `${weird}|x y|/tmp|/home/user|1000\nin\n`);
      assert.equal((await run(h, ['id', '-u'])).stdout, '0\n');
      const groups = (await run(h, ['id', '-G'], { user: 'user' })).stdout.trim();
      const expected = (execFileSync('awk', ['-F:', '$4 ~ /(^|,)user(,|$)/ {print $3}', join(template.path, 'etc/group')]).toString().trim().split('\n').filter(Boolean));
      for (const g of expected) assert.ok(groups.split(' ').includes(g), `group ${g} missing from ${groups}`);
      assert.throws(() => backend.exec(h, { argv: ['true'], user: 'nobody-here' }), (e: unknown) => e instanceof CoppiceError && e.code === 'bad_request');
    });

    it('exit codes; a missing cwd or binary is said from the sandbox side, no host path', async () => {
      assert.deepEqual((await run(h, ['sh', '-c', 'exit 3'])).exit, { exitCode: 3, signal: null });
      // a signal the command got from inside is an exit code, as runc exec showed it
      assert.deepEqual((await run(h, ['sh', '-c', 'kill -9 $$'])).exit, { exitCode: 137, signal: null });
      const cwd = await run(h, ['true'], { cwd: '/nonexistent' });
      assert.equal(cwd.exit.exitCode, 126);
      assert.match(cwd.stderr, /chdir \/nonexistent: No such file or directory/);
      const bin = await run(h, ['/no/such/binary']);
      assert.equal(bin.exit.exitCode, 127);
      assert.match(bin.stderr, /\/no\/such\/binary: command not found/);
      for (const s of [cwd.stderr, bin.stderr]) assert.ok(!s.includes(stateDir), s);
      assert.throws(
        () => backend.exec(h, { argv: ['echo', 'a\0b'] }),
        (e: unknown) => e instanceof CoppiceError && e.code === 'bad_request' && e.field === 'argv',
      );
    });

    it('SIGINT goes to the process group: sh -c "sleep 20; echo after" ends without "after"', { timeout: 15_000 }, async () => {
      const p = backend.exec(h, { argv: ['sh', '-c', 'sleep 20; echo after'] });
      const r = collect(p);
      const pid = await p.pid!();
      assert.ok(pid !== null && pid > 1);
      await until('sleep to start', async () => (await run(h, ['ps', '-o', 'pid,comm'])).stdout.includes('sleep'));
      p.kill('SIGINT');
      const res = await r;
      assert.deepEqual(res.exit, { exitCode: null, signal: 'SIGINT' });
      assert.equal(res.stdout, '');
      assert.doesNotMatch((await run(h, ['ps', '-o', 'pid,comm'])).stdout, /sleep/, 'the group was signalled, sleep too');
    });

    it('reaps orphaned zombies', async () => {
      await run(h, ['sh', '-c', 'sleep 0.1 & exit 0']);
      await until('the orphan to be reaped', async () => !/^\s*\d+\s+Z/m.test((await run(h, ['ps', '-o', 'pid,stat,comm'])).stdout));
    });

    it('nothing inside can reach the channel: /proc/1/fd unreadable, no socket by path, not in /proc/net/unix', async () => {
      const r = await run(h, [
        'sh',
        '-c',
        'ls /proc/1/fd >/dev/null 2>&1 && echo listed; for f in /proc/1/fd/*; do readlink "$f" && echo "readlink-ok $f"; cat "$f" </dev/null >/dev/null 2>&1 && echo "open-ok $f"; done; ' +
          'find / -xdev -type s 2>/dev/null; grep -c agent.sock /proc/net/unix; ls -la /proc/1/root/ >/dev/null 2>&1 && echo root-listed; true',
      ]);
      assert.doesNotMatch(r.stdout, /readlink-ok|open-ok/, r.stdout);
      assert.doesNotMatch(r.stdout, /agent\.sock|\.sock/, r.stdout);
      assert.match(r.stdout, /^0$/m, 'the socket is not in the sandbox netns');
      // the same as the unprivileged user: /proc/1/fd is not even listable
      const u = await run(h, ['sh', '-c', 'ls /proc/1/fd >/dev/null 2>&1 && echo listed; true'], { user: 'user' });
      assert.equal(u.stdout, '');
    });

    // The early command may be frozen mid-run (pause waits for its start, not its end): both are
    // awaited after the resume, or this would wait on a frozen sandbox forever.
    it('an exec started just before pause runs; one started while paused runs at resume', { timeout: 60_000 }, async () => {
      const early = collect(backend.exec(h, { argv: ['echo', 'early'] }));
      await backend.pause(h);
      const late = collect(backend.exec(h, { argv: ['echo', 'late'] }));
      await backend.resume(h);
      assert.equal((await early).stdout, 'early\n');
      assert.equal((await late).stdout, 'late\n');
      assert.equal(backend.agentState(h.id), 'connected');
    });

    it('destroy removes the socket and everything else', async () => {
      const sock = sockOf(h);
      assert.ok(existsSync(sock));
      await destroy(h);
      assert.ok(!existsSync(sock));
      assert.equal(backend.agentState(h.id), 'none');
      assert.deepEqual(await findLeftovers([h.id], { stateDir }), []);
    });
  });

  it('python probe (base template): no fd of PID 1 opens, pidfd_getfd fails, no socket connects', { skip: hasBase ? false : `no ${BASE}` }, async () => {
    const h = await create(backend, { name: 'base', path: BASE, backend: 'jail' });
    try {
      const probe = `
import os, socket, ctypes, errno
found = []
# positive control: the same connect code does reach a socket made inside
ctl = socket.socket(socket.AF_UNIX); ctl.bind('/tmp/ctl.sock'); ctl.listen(1)
def tryconnect(p):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(p); return True
    except OSError:
        return False
    finally:
        s.close()
assert tryconnect('/tmp/ctl.sock'), 'control'
for fd in os.listdir('/proc/1/fd'):
    p = '/proc/1/fd/' + fd
    try:
        os.close(os.open(p, os.O_RDONLY)); found.append('open ' + p)
    except OSError: pass
    try:
        os.readlink(p); found.append('readlink ' + p)
    except OSError: pass
    if tryconnect(p): found.append('connect ' + p)
libc = ctypes.CDLL(None, use_errno=True)
pidfd = libc.syscall(434, 1, 0)  # pidfd_open(1)
if pidfd >= 0:
    for fd in range(0, 64):
        if libc.syscall(438, pidfd, fd, 0) >= 0: found.append('pidfd_getfd %d' % fd)
for top, dirs, files in os.walk('/'):
    if top.startswith(('/proc', '/sys')): dirs[:] = []; continue
    for f in files:
        p = os.path.join(top, f)
        try:
            import stat
            if stat.S_ISSOCK(os.lstat(p).st_mode) and p != '/tmp/ctl.sock' and tryconnect(p): found.append('connect ' + p)
        except OSError: pass
print('FOUND', found)
`;
      const r = await run(h, ['python3', '-c', probe]);
      assert.equal(r.exit.exitCode, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'FOUND []');
    } finally {
      await destroy(h);
    }
  });

  it('snapshot with the agent as init, and a sandbox from it', async () => {
    const h = await create();
    try {
      await run(h, ['sh', '-c', 'echo kept > /root/file']);
      const snap = await backend.snapshot!(h, `snap-${randomBytes(5).toString('hex')}`);
      assert.equal((await run(h, ['echo', 'still'])).stdout, 'still\n');
      const f = await backend.create({ id: newId(), template, limits, fromSnapshot: { snapshotID: snap.snapshotID } });
      live.set(f.id, { b: backend, h: f });
      assert.equal(backend.agentState(f.id), 'connected');
      assert.equal((await run(f, ['cat', '/root/file'])).stdout, 'kept\n');
      await destroy(f);
      await backend.deleteSnapshot!(snap.snapshotID);
    } finally {
      await destroy(h);
    }
  });

  it('a lost connection marks the sandbox degraded (one warning) and exec falls back to runc exec', async () => {
    const h = await create();
    const thief = await AgentClient.connect(sockOf(h)); // the newest connection wins: ours is closed
    try {
      await until('degraded', () => backend.agentState(h.id) === 'degraded');
      assert.equal(warnings.filter((w) => /degraded/.test(w.msg ?? '') && (w.o as { id?: string }).id === h.id).length, 1);
      const before = { ...backend.execCounts };
      assert.equal((await run(h, ['echo', 'fallback'])).stdout, 'fallback\n');
      assert.deepEqual(backend.execCounts, { agent: before.agent, runc: before.runc + 1 });
      assert.equal(await ppid(h), 'PPid:\t0');
    } finally {
      thief.close();
      await destroy(h);
      warnings.length = 0;
    }
  });

  it('re-adoption by a new backend on the same state dir reconnects (running and frozen)', async () => {
    const h = await create();
    const p = await create();
    await backend.pause(p);
    const second = await makeBackend();
    for (const x of [h, p]) {
      backend.pool.release(x.ip); // let the second backend claim the addresses
      await second.adopt!(x);
      live.set(x.id, { b: second, h: x });
    }
    assert.equal(second.agentState(h.id), 'connected');
    assert.equal(second.agentState(p.id), 'pending');
    assert.equal(await ppid(h, second), 'PPid:\t1');
    await second.resume(p);
    assert.equal(second.agentState(p.id), 'connected');
    assert.equal(await ppid(p, second), 'PPid:\t1');
    assert.deepEqual(second.execCounts, { agent: 2, runc: 0 });
    await destroy(h, second);
    await destroy(p, second);
  });

  it('an injected failure at "agent" rolls back everything', async () => {
    const id = newId();
    failAt.set(id, 'agent');
    await assert.rejects(backend.create({ id, template, limits }), /step "agent".*injected/);
    assert.deepEqual(await findLeftovers([id], { stateDir }), []);
  });

  it('--jail-agent off: tini is PID 1 and exec uses runc exec', async () => {
    const off = await makeBackend('off');
    assert.equal(off.agentEnabled, false);
    // its own address pool: skip the addresses other backends of this process have routed
    for (const m of execFileSync('ip', ['-4', 'route']).toString().matchAll(/^(10\.78\.0\.\d+) dev cpc/gm)) off.pool.claim(m[1]!);
    const h = await create(off);
    try {
      assert.equal(off.agentState(h.id), 'none');
      assert.equal((await run(h, ['cat', '/proc/1/comm'], { b: off })).stdout, 'init\n');
      assert.equal(await ppid(h, off), 'PPid:\t0');
      assert.deepEqual(off.execCounts, { agent: 0, runc: 2 });
      assert.ok(!existsSync(sockOf(h)));
    } finally {
      await destroy(h, off);
    }
  });

  it('after a gateway SIGKILL and restart, REST execs go through the agent again', { timeout: 120_000 }, async () => {
    const children: ChildGateway[] = [];
    const ids: string[] = [];
    let dir = '';
    try {
      const first = await startChildGateway();
      children.push(first);
      dir = first.stateDir;
      await waitHealthy(first.url);
      const json = async (r: Response) => (await r.json()) as any;
      const a = await json(await first.api('POST', '/sandboxes', { templateID: 'busybox' }));
      const b = await json(await first.api('POST', '/sandboxes', { templateID: 'busybox' }));
      ids.push(a.sandboxID, b.sandboxID);
      const cmd = { cmd: 'grep PPid /proc/$$/status' };
      assert.equal((await json(await first.api('POST', `/sandboxes/${a.sandboxID}/exec`, cmd))).stdout, 'PPid:\t1\n');
      assert.equal((await first.api('POST', `/sandboxes/${b.sandboxID}/pause`)).status, 204);
      first.proc.kill('SIGKILL');
      await first.exit;

      const second = await startChildGateway([], {}, dir);
      children.push(second);
      await waitHealthy(second.url);
      assert.equal((await json(await second.api('POST', `/sandboxes/${a.sandboxID}/exec`, cmd))).stdout, 'PPid:\t1\n');
      assert.equal((await second.api('POST', `/sandboxes/${b.sandboxID}/resume`)).status, 204);
      assert.equal((await json(await second.api('POST', `/sandboxes/${b.sandboxID}/exec`, cmd))).stdout, 'PPid:\t1\n');
      assert.doesNotMatch(second.stderr(), /degraded/);
      second.proc.kill('SIGINT');
      assert.equal(await second.exit, 0);
      assert.deepEqual(await findLeftovers(ids, { stateDir: dir }), []);
    } finally {
      for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
      await Promise.all(children.map((c) => c.exit));
      if (dir) {
        const cleanup = await createLinuxJailBackend({ stateDir: dir });
        for (const id of ids) await cleanup.destroy({ id, backend: 'jail', template: 'busybox', ip: '10.78.0.250', data: {} });
        await cleanup.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
});
