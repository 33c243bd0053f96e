// The FreeBSD driver's command runners: the real one (execFile/spawn, exercised here on Linux with
// ordinary tools) and the recording one the command-plan tests rely on.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RecordingRunner } from '../../src/backends/jail/freebsd/recording-runner.ts';
import { CommandFailed, ExecFileRunner, check, removeTolerant } from '../../src/backends/jail/freebsd/runner.ts';

const text = async (s: NodeJS.ReadableStream) => {
  let out = '';
  for await (const b of s) out += b.toString();
  return out;
};

describe('ExecFileRunner', () => {
  const r = new ExecFileRunner();

  it('resolves a non-zero exit with its code and output instead of rejecting', async () => {
    assert.deepEqual(await r.run(['sh', '-c', 'echo out; echo err >&2; exit 3']), { stdout: 'out\n', stderr: 'err\n', code: 3 });
  });

  it('rejects when the program cannot be started', async () => {
    await assert.rejects(r.run(['/nonexistent/zfs', 'list']), /ENOENT/);
  });

  it('streams a spawned command both ways and reports its exit or its signal', async () => {
    const cat = r.spawn(['cat']);
    cat.stdin.end('bytes\n');
    const [out, exit] = await Promise.all([text(cat.stdout), cat.exited]);
    assert.equal(out, 'bytes\n');
    assert.deepEqual(exit, { code: 0, signal: null });
    const sleeper = r.spawn(['sleep', '30']);
    sleeper.kill('SIGTERM');
    assert.deepEqual(await sleeper.exited, { code: null, signal: 'SIGTERM' });
  });
});

describe('check and removeTolerant', () => {
  it('check throws CommandFailed naming argv and stderr', async () => {
    const rec = new RecordingRunner().fail('zfs clone', 'cannot clone: out of space');
    await assert.rejects(check(rec, ['zfs', 'clone', 'a', 'b']), (e: unknown) => e instanceof CommandFailed && e.message === 'zfs clone a b: cannot clone: out of space');
    assert.equal((await check(rec, ['zfs', 'clone', 'a', 'b'])).code, 0); // fail() answers once
  });

  it('removeTolerant counts "already gone" as success but not other failures', async () => {
    const rec = new RecordingRunner()
      .once('jail -r x', { code: 1, stderr: 'jail: "x" not found' })
      .once('jail -r x', { code: 1, stderr: 'jail: jail_remove: Operation not permitted' });
    assert.equal(await removeTolerant(rec, ['jail', '-r', 'x'], /not found/), false);
    await assert.rejects(removeTolerant(rec, ['jail', '-r', 'x'], /not found/), /Operation not permitted/);
    assert.equal(await removeTolerant(rec, ['jail', '-r', 'x'], /not found/), true);
  });
});

describe('RecordingRunner', () => {
  it('matches a string as the whole line or a whole-word prefix, never a partial word', async () => {
    const rec = new RecordingRunner().on('ifconfig epair', { stdout: 'hit' });
    assert.equal((await rec.run(['ifconfig', 'epair', 'create'])).stdout, 'hit');
    assert.equal((await rec.run(['ifconfig', 'epair'])).stdout, 'hit');
    assert.equal((await rec.run(['ifconfig', 'epair0a', 'destroy'])).stdout, '');
  });

  it('uses rules in the order they were added, spending once() rules', async () => {
    const rec = new RecordingRunner().once('ps', { stdout: 'first' }).on(/^ps /, { stdout: 'then' });
    const outs = [];
    for (let i = 0; i < 3; i++) outs.push((await rec.run(['ps', '-o', 'stat='])).stdout);
    assert.deepEqual(outs, ['first', 'then', 'then']);
    assert.deepEqual(rec.lines(), ['ps -o stat=', 'ps -o stat=', 'ps -o stat=']);
  });

  it('records spawned commands, scripts their output, and ends them on kill', async () => {
    const rec = new RecordingRunner().on('jexec', { stdout: 'o', stderr: 'e', code: 2 });
    const p = rec.spawn(['jexec', 'j', 'true']);
    const [o, e, exit] = await Promise.all([text(p.stdout), text(p.stderr), p.exited]);
    assert.deepEqual([o, e, exit], ['o', 'e', { code: 2, signal: null }]);
    const k = rec.spawn(['jexec', 'j', 'sleep']);
    k.kill('SIGKILL');
    assert.deepEqual(await k.exited, { code: null, signal: 'SIGKILL' });
    assert.deepEqual(rec.calls.map((c) => c.kind), ['spawn', 'spawn']);
    assert.deepEqual(rec.kills, [{ argv: ['jexec', 'j', 'sleep'], signal: 'SIGKILL' }]);
  });
});
