// Command-plan tests for the FreeBSD jail driver's exec, pause and resume, against a recording
// runner (create, fork, snapshot and destroy are in freebsd-driver.test.ts). The driver is UNTESTED
// ON REAL FREEBSD: these tests pin the argv it would run, not whether FreeBSD accepts it.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CoppiceError } from '../../src/errors.ts';
import type { CreateSpec, SandboxHandle, Template } from '../../src/backends/types.ts';
import { createFreebsdJailBackend } from '../../src/backends/jail/freebsd/index.ts';
import { RecordingRunner } from '../../src/backends/jail/freebsd/recording-runner.ts';

const ID = 'abc0123456';
const J = `coppice-${ID}`;
const template: Template = { name: 'base', path: '/nonexistent/base-template', backend: 'jail' };
const spec: CreateSpec = { id: ID, template, limits: { memoryMiB: 256, cpus: 1.5, pids: 100 } };

/** A driver with sandbox ID created (jid 42) and the recording cleared. Test rules go first. */
async function created(script?: (r: RecordingRunner) => void, opts: { freezeRounds?: number } = {}) {
  const runner = new RecordingRunner();
  script?.(runner);
  runner.on('ifconfig epair create', { stdout: 'epair7a\n' });
  runner.on('jail -i -c', { stdout: '42\n' });
  const backend = createFreebsdJailBackend({ runner, epairSettleMs: 0, sleep: async () => undefined, freezeRounds: opts.freezeRounds });
  const handle = await backend.create(spec);
  runner.clear();
  return { runner, backend, handle };
}

describe('FreeBSD jail driver: exec', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cpc-fbsd-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs jexec -l -U <user> in the jail through the spawn variant and streams its output', async () => {
    const { runner, backend, handle } = await created((r) => r.on('jexec -l', { stdout: 'hi\n', code: 3 }));
    const p = backend.exec(handle, { argv: ['echo', 'hi'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    assert.deepEqual(await p.exited, { exitCode: 3, signal: null });
    assert.equal(out, 'hi\n');
    assert.deepEqual(runner.calls, [{ kind: 'spawn', argv: ['jexec', '-l', '-U', 'root', J, 'echo', 'hi'] }]);
  });

  it('defaults to the template user `user` when its /etc/passwd has one', async () => {
    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'etc', 'passwd'), 'root:*:0:0::/root:/bin/sh\nuser:*:1001:1001::/home/user:/bin/sh\n');
    const { runner, backend, handle } = await created();
    const h: SandboxHandle = { ...handle, data: { ...handle.data, templatePath: dir } };
    await backend.exec(h, { argv: ['id'] }).exited;
    await backend.exec(h, { argv: ['id'], user: 'root' }).exited;
    assert.deepEqual(runner.lines(), [`jexec -l -U user ${J} id`, `jexec -l -U root ${J} id`]);
    assert.equal(backend.defaultUser({ ...template, path: dir }), 'user');
    assert.equal(backend.defaultUser(template), 'root');
  });

  it('passes env through env(1) and cwd through a positional sh wrapper, never re-quoting argv', async () => {
    const { runner, backend, handle } = await created();
    await backend.exec(handle, { argv: ['printf', "%s'", 'a b'], env: { A: '1 2' }, cwd: '/tmp/x y' }).exited;
    assert.deepEqual(runner.calls[0].argv, [
      'jexec', '-l', '-U', 'root', J,
      '/usr/bin/env', 'A=1 2',
      '/bin/sh', '-c', 'cd -- "$1" || exit 1; shift; exec "$@"', 'coppice-exec', '/tmp/x y',
      'printf', "%s'", 'a b',
    ]);
  });

  it('delivers kill() to the command and reports the signal', async () => {
    const { runner, backend, handle } = await created();
    const p = backend.exec(handle, { argv: ['sleep', '100'] });
    p.kill('SIGTERM');
    assert.deepEqual(await p.exited, { exitCode: null, signal: 'SIGTERM' });
    assert.deepEqual(runner.kills.map((k) => k.signal), ['SIGTERM']);
  });
});

describe('FreeBSD jail driver: pause and resume', () => {
  it('SIGSTOPs the jail and re-checks until every process shows T (a child forked mid-signal is caught)', async () => {
    const { runner, backend, handle } = await created((r) => {
      r.once('ps -o stat= -J 42', { stdout: 'T\nS\n' }); // one process escaped the first round
      r.on('ps -o stat= -J 42', { stdout: 'T\nTs\nZ\n' });
    });
    await backend.pause(handle);
    assert.deepEqual(runner.lines(), ['pkill -STOP -j 42', 'ps -o stat= -J 42', 'pkill -STOP -j 42', 'ps -o stat= -J 42']);
  });

  it('gives up after the round limit, continues every process, and fails', async () => {
    const { runner, backend, handle } = await created((r) => r.on('ps -o stat= -J 42', { stdout: 'R\n' }), { freezeRounds: 2 });
    await assert.rejects(backend.pause(handle), (e: unknown) => e instanceof CoppiceError && e.code === 'backend_failed' && /after 2 rounds/.test(e.message));
    assert.deepEqual(runner.lines(), ['pkill -STOP -j 42', 'ps -o stat= -J 42', 'pkill -STOP -j 42', 'ps -o stat= -J 42', 'pkill -CONT -j 42']);
  });

  it('treats an empty persist jail (pkill and ps match nothing, exit 1) as paused at once', async () => {
    const { runner, backend, handle } = await created((r) => r.on('pkill', { code: 1 }).on('ps', { code: 1 }));
    await backend.pause(handle);
    assert.deepEqual(runner.lines(), ['pkill -STOP -j 42', 'ps -o stat= -J 42']);
  });

  it('resumes with SIGCONT to every process of the jail', async () => {
    const { runner, backend, handle } = await created();
    await backend.resume(handle);
    assert.deepEqual(runner.lines(), ['pkill -CONT -j 42']);
  });

  it('looks the jid up by name for a handle that lacks one', async () => {
    const { runner, backend, handle } = await created((r) => r.on(`jls -j ${J} jid`, { stdout: '9\n' }));
    await backend.resume({ ...handle, data: {} });
    assert.deepEqual(runner.lines(), [`jls -j ${J} jid`, 'pkill -CONT -j 9']);
  });
});
