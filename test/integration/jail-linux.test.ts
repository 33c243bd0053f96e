// The Linux jail driver against the real host: runc, overlayfs, netns/veth, cgroup v1 freezer.
// Needs root. Every test tracks what it creates, by sandbox id, and removes it; the suite ends by
// asserting that findLeftovers() sees nothing for any id it ever used.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoppiceError } from '../../src/errors.ts';
import type { ExecExit, ExecProcess, SandboxHandle, Template } from '../../src/backends/types.ts';
import { createLinuxJailBackend, findLeftovers, type CreateStep, type LinuxJailBackend } from '../../src/backends/jail/linux/index.ts';

const root = process.getuid?.() === 0;
const skip = root ? false : 'needs root (runc, mounts, netns)';
const REPO = new URL('../..', import.meta.url).pathname;

let backend: LinuxJailBackend;
let stateDir: string;
let templatesRoot: string;
let template: Template;
const usedIds = new Set<string>();
const live = new Map<string, SandboxHandle>();
const warnings: { o: object; msg?: string }[] = [];
/** Fault injection: sandbox id -> step at which create must fail. */
const failAt = new Map<string, CreateStep | { abort: AbortController; step: CreateStep }>();

function newId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let id = 't';
  for (const b of randomBytes(9)) id += alphabet[b % alphabet.length];
  usedIds.add(id);
  return id;
}

const limits = { memoryMiB: 128, cpus: 0.5, pids: 64 };

async function create(id = newId()): Promise<SandboxHandle> {
  const h = await backend.create({ id, template, limits });
  live.set(id, h);
  return h;
}

async function destroy(h: SandboxHandle): Promise<void> {
  await backend.destroy(h);
  live.delete(h.id);
}

interface Result {
  stdout: Buffer;
  stderr: Buffer;
  exit: ExecExit;
}

async function collect(p: ExecProcess, stdin?: Buffer): Promise<Result> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  p.stdout.on('data', (b: Buffer) => out.push(b));
  p.stderr.on('data', (b: Buffer) => err.push(b));
  p.stdin.end(stdin);
  const exit = await p.exited;
  return { stdout: Buffer.concat(out), stderr: Buffer.concat(err), exit };
}

const run = (h: SandboxHandle, argv: string[], user?: string, stdin?: Buffer) => collect(backend.exec(h, { argv, user }), stdin);

describe('jail/linux backend (real runc)', { skip }, () => {
  before(async () => {
    templatesRoot = mkdtempSync(join(tmpdir(), 'coppice-tpl-'));
    stateDir = mkdtempSync(join(tmpdir(), 'coppice-state-'));
    execFileSync(join(REPO, 'ops/templates/build-busybox.sh'), [templatesRoot], { stdio: 'ignore' });
    template = { name: 'busybox', path: join(templatesRoot, 'busybox-template'), backend: 'jail' };
    backend = await createLinuxJailBackend({
      stateDir,
      logger: { info: () => undefined, warn: (o, msg) => warnings.push({ o, msg }) },
      hooks: {
        beforeStep(step, id) {
          const f = failAt.get(id);
          if (f === step) throw new Error(`injected failure at ${step}`);
          if (typeof f === 'object' && f.step === step) f.abort.abort();
        },
      },
    });
  });

  after(async () => {
    for (const h of live.values()) await backend.destroy(h);
    await backend?.close();
    const left = await findLeftovers([...usedIds], { stateDir });
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(templatesRoot, { recursive: true, force: true });
    assert.deepEqual(left, [], 'leftovers after the suite');
  });

  describe('one sandbox, end to end', () => {
    let h: SandboxHandle;
    before(async () => {
      h = await create();
    });

    it('is listed live and running, with an address from the pool', async () => {
      assert.match(h.ip, /^10\.78\.0\.\d+$/);
      assert.ok((await backend.listLive()).some((s) => s.id === h.id && s.state === 'running'));
    });

    it('execs echo with exact stdout bytes', async () => {
      const r = await run(h, ['echo', 'hi']);
      assert.deepEqual(r.exit, { exitCode: 0, signal: null });
      assert.deepEqual(r.stdout, Buffer.from('hi\n'));
      assert.equal(r.stderr.length, 0);
    });

    it('reports exit codes as they are', async () => {
      assert.deepEqual((await run(h, ['sh', '-c', 'exit 3'])).exit, { exitCode: 3, signal: null });
      assert.deepEqual((await run(h, ['sh', '-c', 'exit 130'])).exit, { exitCode: 130, signal: null });
      const missing = await run(h, ['/no/such/binary']);
      assert.notEqual(missing.exit.exitCode, 0);
    });

    it('round-trips binary stdin through cat, and stderr separately', async () => {
      const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(200_000)]);
      const r = await run(h, ['cat'], undefined, bytes);
      assert.equal(r.exit.exitCode, 0);
      assert.ok(r.stdout.equals(bytes), 'stdout differs from stdin');
      const e = await run(h, ['sh', '-c', 'echo out; echo err >&2']);
      assert.equal(e.stdout.toString(), 'out\n');
      assert.equal(e.stderr.toString(), 'err\n');
    });

    it('passes argv, env and cwd through unchanged, as the default user', async () => {
      assert.equal(backend.defaultUser(template), 'user');
      const weird = `a b'c"d$HOME\\;*`;
      const p = backend.exec(h, { argv: ['sh', '-c', 'printf "%s|%s|%s|" "$1" "$FOO" "$(pwd)"; id -u', 'sh', weird], env: { FOO: 'x y' }, cwd: '/tmp' });
      const r = await collect(p);
      assert.equal(r.stdout.toString(), `${weird}|x y|/tmp|1000\n`);
      assert.equal((await run(h, ['id', '-u'], 'root')).stdout.toString(), '0\n');
      assert.equal((await run(h, ['sh', '-c', 'echo $HOME $USER; pwd'], 'user')).stdout.toString(), '/home/user user\n/home/user\n');
      assert.throws(() => backend.exec(h, { argv: ['true'], user: 'nobody-here' }), (e: unknown) => e instanceof CoppiceError && e.code === 'bad_request');
    });

    it('kill(SIGINT) of sleep reports the signal; SIGKILL works too', async () => {
      const p = backend.exec(h, { argv: ['sleep', '100'] });
      const r = collect(p);
      await sleep(150);
      const t0 = Date.now();
      p.kill('SIGINT');
      assert.deepEqual((await r).exit, { exitCode: null, signal: 'SIGINT' });
      assert.ok(Date.now() - t0 < 2000);
      const q = backend.exec(h, { argv: ['sh', '-c', 'trap "" INT TERM; sleep 100'] });
      q.kill('SIGKILL'); // immediately: exercises the queue-until-started path
      assert.deepEqual((await collect(q)).exit, { exitCode: null, signal: 'SIGKILL' });
      const ps = await run(h, ['ps', '-o', 'pid,comm'], 'root');
      assert.doesNotMatch(ps.stdout.toString(), /sleep 100|\bsh\b/);
    });

    it('reaps orphaned zombies (tini is PID 1)', async () => {
      await run(h, ['sh', '-c', 'sleep 0.1 & exit 0']);
      await sleep(400);
      const ps = (await run(h, ['ps', '-o', 'pid,stat,comm'], 'root')).stdout.toString();
      assert.match(ps, /^\s*1 .*init/m);
      assert.doesNotMatch(ps, /^\s*\d+\s+Z/m, ps);
    });

    it('pause freezes a counter loop and resume lets it continue; runc sees "paused"', async () => {
      const loop = backend.exec(h, { argv: ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.tmp; mv /tmp/counter.tmp /tmp/counter; sleep 0.02; done'] });
      const done = collect(loop);
      // The test reads the counter through the sandbox's upper dir (trusted test code, our own sandbox).
      const counterFile = join(stateDir, 'sandboxes', h.id, 'upper', 'tmp', 'counter');
      const counter = () => Number(readFileSync(counterFile, 'utf8').trim() || '0');
      for (let i = 0; i < 100 && !existsSync(counterFile); i++) await sleep(20);
      await backend.pause(h);
      assert.ok((await backend.listLive()).some((s) => s.id === h.id && s.state === 'paused'));
      const frozenAt = counter();
      await sleep(400);
      assert.equal(counter(), frozenAt, 'counter advanced while paused');
      await backend.resume(h);
      await sleep(400);
      assert.ok(counter() > frozenAt + 3, `counter did not advance after resume (${frozenAt} -> ${counter()})`);
      assert.ok((await backend.listLive()).some((s) => s.id === h.id && s.state === 'running'));
      loop.kill('SIGKILL');
      assert.equal((await done).exit.signal, 'SIGKILL');
    });

    it('applies limits, visible in the cgroup files inside and on the host', async () => {
      const r = await run(h, ['cat', '/sys/fs/cgroup/pids/pids.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/cpu/cpu.cfs_quota_us', '/sys/fs/cgroup/cpu/cpu.cfs_period_us']);
      assert.deepEqual(r.stdout.toString().split('\n').slice(0, 4), ['64', String(128 * 1024 * 1024), '50000', '100000']);
      assert.equal(readFileSync(`/sys/fs/cgroup/pids/coppice/${h.id}/pids.max`, 'utf8').trim(), '64');
      // The pids limit bites: 64 tasks max, so 100 background sleeps cannot all start.
      const fork = await run(h, ['sh', '-c', 'for i in $(seq 100); do sleep 1 & done; wait; echo done'], 'root');
      assert.match(fork.stderr.toString(), /can't fork/);
      assert.notEqual(fork.exit.exitCode, 0);
      assert.equal(fork.stdout.toString(), '');
    });

    it('configures eth0 and routes: host pings the sandbox, the sandbox pings its gateway', async () => {
      const addr = (await run(h, ['ip', '-4', 'addr', 'show', 'eth0'])).stdout.toString();
      assert.match(addr, new RegExp(`inet ${h.ip.replace(/\./g, '\\.')}/24`));
      const route = (await run(h, ['ip', 'route'])).stdout.toString();
      assert.match(route, /default via 10\.78\.0\.1 dev eth0/);
      const hosts = (await run(h, ['cat', '/etc/hosts'])).stdout.toString();
      assert.ok(hosts.includes(`${h.ip}\t${h.id}\n`), hosts); // own hostname resolvable (sudo needs it)
      execFileSync('busybox', ['ping', '-c', '1', '-W', '2', h.ip], { stdio: 'ignore' });
      const ping = await run(h, ['ping', '-c', '1', '-W', '2', '10.78.0.1'], 'root');
      assert.equal(ping.exit.exitCode, 0, ping.stdout.toString() + ping.stderr.toString());
    });

    it('destroy removes everything, and is idempotent', async () => {
      await destroy(h);
      assert.deepEqual(await findLeftovers([h.id], { stateDir }), []);
      assert.ok(!backend.pool.isLive(h.ip));
      await backend.destroy(h); // again: no throw
      assert.throws(() => backend.exec(h, { argv: ['true'] }), (e: unknown) => e instanceof CoppiceError && e.code === 'not_found');
      assert.ok(!(await backend.listLive()).some((s) => s.id === h.id));
    });
  });

  describe('rollback', () => {
    it('a missing template fails at "overlay" and leaves nothing', async () => {
      const id = newId();
      const before = backend.pool.inUse;
      await assert.rejects(
        backend.create({ id, template: { ...template, path: join(templatesRoot, 'nope-template') }, limits }),
        (e: unknown) => e instanceof CoppiceError && e.code === 'backend_failed' && /step "overlay"/.test(e.message),
      );
      assert.deepEqual(await findLeftovers([id], { stateDir }), []);
      assert.equal(backend.pool.inUse, before);
    });

    const steps: CreateStep[] = ['address', 'dir', 'overlay', 'netns', 'netns-inside', 'config', 'runc-create', 'runc-start'];
    for (const step of steps) {
      it(`an injected failure at "${step}" rolls back every earlier step`, async () => {
        const id = newId();
        failAt.set(id, step);
        const before = backend.pool.inUse;
        await assert.rejects(create(id), (e: unknown) => e instanceof CoppiceError && e.message.includes(`step "${step}"`) && /injected/.test(e.message));
        assert.deepEqual(await findLeftovers([id], { stateDir }), []);
        assert.equal(backend.pool.inUse, before);
      });
    }

    it('a failure after runc create (container exists) still leaves nothing', async () => {
      const id = newId();
      failAt.set(id, 'runc-start');
      await assert.rejects(create(id));
      assert.deepEqual(await findLeftovers([id], { stateDir }), []);
      assert.ok(!(await backend.listLive()).some((s) => s.id === id));
    });

    it('an AbortSignal fired mid-create rolls back', async () => {
      const id = newId();
      const abort = new AbortController();
      failAt.set(id, { abort, step: 'netns-inside' });
      await assert.rejects(backend.create({ id, template, limits }, abort.signal), /aborted at step "netns-inside"/);
      assert.deepEqual(await findLeftovers([id], { stateDir }), []);
    });

    it('a duplicate id is a conflict and does not disturb the live sandbox', async () => {
      const h = await create();
      await assert.rejects(backend.create({ id: h.id, template, limits }), (e: unknown) => e instanceof CoppiceError && e.code === 'conflict');
      assert.equal((await run(h, ['echo', 'still here'])).stdout.toString(), 'still here\n');
      await destroy(h);
      assert.deepEqual(await findLeftovers([h.id], { stateDir }), []);
    });

    it('rejects bad ids before touching the host', async () => {
      await assert.rejects(backend.create({ id: 'BAD', template, limits }), (e: unknown) => e instanceof CoppiceError && e.code === 'bad_request');
    });
  });

  it('10 concurrent creates get 10 distinct addresses and all clean up', async () => {
    const ids = Array.from({ length: 10 }, () => newId());
    const handles = await Promise.all(ids.map((id) => create(id)));
    assert.equal(new Set(handles.map((h) => h.ip)).size, 10);
    const outs = await Promise.all(handles.map((h) => run(h, ['hostname'])));
    assert.deepEqual(outs.map((o) => o.stdout.toString().trim()), ids);
    await Promise.all(handles.map((h) => destroy(h)));
    assert.deepEqual(await findLeftovers(ids, { stateDir }), []);
  });

  // The debootstrap template takes ~1 min to build, so this only runs where it already exists.
  const base = '/var/lib/coppice/templates/base-template';
  it('base template: python3 and passwordless sudo work for the default user', { skip: existsSync(join(base, '.coppice-template')) ? false : `no ${base} (ops/templates/build-base.sh)` }, async () => {
    const baseTpl: Template = { name: 'base', path: base, backend: 'jail' };
    assert.equal(backend.defaultUser(baseTpl), 'user');
    const id = newId();
    const h = await backend.create({ id, template: baseTpl, limits });
    live.set(id, h);
    try {
      const t0 = Date.now();
      const sudo = await run(h, ['sudo', '-n', 'id', '-u']);
      assert.deepEqual([sudo.exit.exitCode, sudo.stdout.toString()], [0, '0\n'], sudo.stderr.toString());
      assert.ok(Date.now() - t0 < 3000, 'sudo stalled (hostname resolution?)');
      const py = await run(h, ['python3', '-c', 'import os; print(os.getuid(), os.getcwd())']);
      assert.equal(py.stdout.toString(), '1000 /home/user\n');
    } finally {
      await destroy(h);
    }
  });

  it('timings (medians of 5)', async (t) => {
    const samples: Record<string, number[]> = { create: [], 'exec true': [], pause: [], resume: [], destroy: [] };
    const time = async (k: string, fn: () => Promise<unknown>) => {
      const t0 = performance.now();
      await fn();
      samples[k].push(performance.now() - t0);
    };
    for (let i = 0; i < 5; i++) {
      let h!: SandboxHandle;
      await time('create', async () => (h = await create()));
      await time('exec true', () => run(h, ['true']));
      await time('pause', () => backend.pause(h));
      await time('resume', () => backend.resume(h));
      await time('destroy', () => destroy(h));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    t.diagnostic(Object.entries(samples).map(([k, xs]) => `${k} ${median(xs).toFixed(1)} ms`).join(', '));
    assert.equal(warnings.length, 0, JSON.stringify(warnings));
  });
});
