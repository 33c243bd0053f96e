// The SDK's E2B-shaped API end to end: a real gateway, real runc sandboxes. commands.run (REST and
// streamed), background commands with stdin, CommandExitError; files (binary-safe, list, exists,
// makeDir, remove, the sandbox's own permissions); lifetimes in ms; connect resuming a paused
// sandbox; fork giving what create gives. Needs root (runc).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  CommandExitError,
  ConflictError,
  CoppiceError,
  NotFoundError,
  PermissionDeniedError,
  Sandbox,
} from '../../src/sdk/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const root = process.getuid?.() === 0;
let gw: TestGateway;
let sb: Sandbox;
const made: Sandbox[] = [];

describe('SDK API on a real gateway', { skip: root ? false : 'needs root (runc sandboxes)', timeout: 300_000 }, () => {
  before(async () => {
    gw = await startTestGateway(['--jail-subnet', '10.78.152.0/24']);
    sb = await Sandbox.create('base', { url: gw.url, apiKey: gw.key, timeoutMs: 600_000 });
    made.push(sb);
  });

  after(async () => {
    for (const s of made) await s.kill().catch(() => undefined);
    await gw?.close();
  });

  it('lifetimes are ms: timeoutMs sets endAt, setTimeout moves it', async () => {
    const span = (i: { startedAt: string; endAt: string }) => Date.parse(i.endAt) - Date.parse(i.startedAt);
    assert.ok(Math.abs(span(sb.info) - 600_000) < 5_000, `create: ${span(sb.info)} ms`);
    await sb.setTimeout(1_200_000);
    const moved = Date.parse((await sb.getInfo()).endAt) - Date.now();
    assert.ok(moved > 1_190_000 && moved <= 1_200_000, `setTimeout: ${moved} ms`);
  });

  it('commands.run: buffered, streamed, stdin, and a CommandExitError for a non-zero exit', async () => {
    const r = await sb.commands.run('echo "$GREETING" from $(pwd)', { envs: { GREETING: 'hi' }, cwd: '/tmp' });
    assert.deepEqual([r.exitCode, r.stdout], [0, 'hi from /tmp\n']);
    const pieces: string[] = [];
    const s = await sb.commands.run('for i in 1 2 3; do echo "line $i"; done; echo err >&2', { onStdout: (d) => pieces.push(d) });
    assert.equal(pieces.join(''), 'line 1\nline 2\nline 3\n');
    assert.deepEqual([s.stdout, s.stderr, s.exitCode], ['line 1\nline 2\nline 3\n', 'err\n', 0]);
    assert.equal((await sb.commands.run('cat', { stdin: 'fed in', onStderr: () => {} })).stdout, 'fed in');
    const e = await sb.commands.run('echo partial; echo why >&2; exit 3').catch((x: unknown) => x);
    assert.ok(e instanceof CommandExitError && e instanceof CoppiceError, String(e));
    assert.deepEqual([e.code, e.exitCode, e.stdout, e.stderr], ['command_exit', 3, 'partial\n', 'why\n']);
  });

  it('commands.run in the background: a handle with stdin; commands.list sees it; connect re-attaches', async () => {
    const h = await sb.commands.run('read line; echo "got $line"', { background: true, stdin: true });
    assert.ok(h.processID);
    assert.ok((await sb.commands.list()).some((p) => p.processID === h.processID && p.state === 'running'));
    h.write('ping\n');
    const exit = await h.exited;
    assert.equal(exit.exitCode, 0);
    let replay = '';
    const again = await sb.commands.connect(h.processID!, { onStdout: (d) => (replay += Buffer.from(d).toString()) });
    await again.exited;
    assert.equal(replay, 'got ping\n');
  });

  it('files: write and read back every byte value, text, list, exists, makeDir, remove', async () => {
    const bytes = new Uint8Array(256 * 4).map((_, i) => i % 256);
    const w = await sb.files.write('/tmp/sdk/deep/bytes.bin', bytes);
    assert.deepEqual(w, { name: 'bytes.bin', path: '/tmp/sdk/deep/bytes.bin', type: 'file' });
    assert.deepEqual(Buffer.from(await sb.files.read('/tmp/sdk/deep/bytes.bin', { format: 'bytes' })), Buffer.from(bytes));
    await sb.files.write('/tmp/sdk/note.txt', 'h\u00e9llo\n');
    assert.equal(await sb.files.read('/tmp/sdk/note.txt'), 'h\u00e9llo\n');
    // The command side sees the same file.
    assert.equal((await sb.commands.run('wc -c < /tmp/sdk/deep/bytes.bin')).stdout.trim(), '1024');

    const top = await sb.files.list('/tmp/sdk');
    assert.deepEqual(top.map((e) => [e.name, e.type]).sort(), [['deep', 'dir'], ['note.txt', 'file']]);
    assert.equal(top.find((e) => e.name === 'note.txt')!.size, 7);
    const deep = await sb.files.list('/tmp/sdk', { depth: 2 });
    assert.ok(deep.some((e) => e.path === '/tmp/sdk/deep/bytes.bin' && e.size === 1024));

    assert.equal(await sb.files.exists('/tmp/sdk/note.txt'), true);
    assert.equal(await sb.files.exists('/tmp/sdk/absent'), false);
    assert.equal(await sb.files.makeDir('/tmp/sdk/made/here'), true);
    assert.equal(await sb.files.makeDir('/tmp/sdk/made/here'), false);
    assert.equal((await sb.files.getInfo('/tmp/sdk/made/here')).type, 'dir');
    await sb.files.remove('/tmp/sdk/deep');
    assert.equal(await sb.files.exists('/tmp/sdk/deep/bytes.bin'), false);
  });

  it('files: the sandbox\'s own permissions and typed errors', async () => {
    await assert.rejects(sb.files.read('/tmp/sdk/none.txt'), (e) => e instanceof NotFoundError && e.code === 'not_found');
    await assert.rejects(sb.files.read('/etc/shadow'), (e) => e instanceof PermissionDeniedError && e.code === 'permission_denied');
    assert.match(await sb.files.read('/etc/shadow', { user: 'root' }), /^root:/);
  });

  it('connect resumes a paused sandbox (files refuse while it is paused); fork gives what create gives', async () => {
    await sb.pause();
    await assert.rejects(sb.files.read('/tmp/sdk/note.txt'), ConflictError);
    const back = await Sandbox.connect(sb.sandboxID, { url: gw.url, apiKey: gw.key, timeoutMs: 900_000 });
    assert.equal(back.info.state, 'running');
    assert.equal(await back.files.read('/tmp/sdk/note.txt'), 'h\u00e9llo\n');

    const fork = await sb.fork({ timeoutMs: 120_000 });
    made.push(fork);
    assert.deepEqual(Object.keys(fork.info).sort(), Object.keys(sb.info).sort());
    assert.equal(fork.info.templateID, sb.info.templateID);
    assert.notEqual(fork.sandboxID, sb.sandboxID);
    assert.equal(await fork.files.read('/tmp/sdk/note.txt'), 'h\u00e9llo\n');
  });
});
