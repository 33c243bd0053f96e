// The SSH exec shim against a real sshd (a Linux pool-ctl guest): argv round-trips byte-exact
// (property test), exit codes and signals, stdin, large output, and reconnect after a drop.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { CoppiceError } from '../../src/errors.ts';
import { GuestConnection } from '../../src/backends/bhyve/ssh.ts';
import type { ExecExit, ExecProcess } from '../../src/backends/types.ts';
import { POOL_CTL, BUILD_IMAGE, IMAGES, BASE, KEY, TEMPLATE } from '../helpers/bhyve-env.ts';

const run = promisify(execFile);

const tag = randomBytes(2).toString('hex');
const bridge = `cps${tag}br`;
const state = mkdtempSync(join(tmpdir(), 'coppice-sshshim-test-'));
const net3 = (() => {
  const used = execFileSync('ip', ['-4', '-o', 'addr']).toString() + execFileSync('ip', ['-4', 'route']).toString();
  for (;;) { const n = `10.99.${1 + Math.floor(Math.random() * 254)}`; if (!used.includes(`${n}.`)) return n; }
})();
const env = {
  ...process.env, COPPICE_POOL_CTL_STATE: state, COPPICE_BHYVE_TEMPLATES_ROOT: IMAGES,
  COPPICE_POOL_CTL_SUBNET: `${net3}.0/24`, COPPICE_POOL_CTL_BRIDGE: bridge, COPPICE_POOL_CTL_PREFIX: `cps${tag}`,
};
const ctl = async (...args: string[]) => (await run(POOL_CTL, args, { env, timeout: 120_000 })).stdout.trim();

let ip = '';
let conn: GuestConnection;

before(async () => {
  await run(BUILD_IMAGE, [TEMPLATE, IMAGES, BASE], { timeout: 600_000 });
  await ctl('warm', TEMPLATE, '--count', '1');
  ip = JSON.parse(await ctl('checkout', TEMPLATE)).ip;
  conn = new GuestConnection({ host: ip, keyPath: KEY });
  await conn.connect();
});

after(async () => {
  conn?.close();
  try {
    for (const v of JSON.parse(await ctl('list', '--json')).vms) await ctl('release', v.vm).catch(() => {});
    await ctl('drain', TEMPLATE);
  } catch { /* forced part below */ }
  try { execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' }); } catch { /* gone */ }
  try { execFileSync('umount', [join(state, 'templates', TEMPLATE, 'mnt')], { stdio: 'ignore' }); } catch { /* gone */ }
  rmSync(state, { recursive: true, force: true });
});

/** Run to completion, collecting raw bytes. */
async function collect(p: ExecProcess, input?: Buffer): Promise<{ out: Buffer; err: Buffer; exit: ExecExit }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  p.stdout.on('data', (b: Buffer) => out.push(b));
  p.stderr.on('data', (b: Buffer) => err.push(b));
  p.stdin.end(input);
  const exit = await p.exited;
  return { out: Buffer.concat(out), err: Buffer.concat(err), exit };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Characters that shells care about, weighted up so every run meets several of them.
const nasty = fc.constantFrom("'", '"', '`', '$', '$(', ')', '\\', '\n', '\r', '\t', ' ', ';', '&', '|', '<', '>', '*', '?',
  '[', ']', '{', '}', '~', '#', '!', '=', '%', '-', '--', '\u00a0', '\u202e', 'é', 'ユ', '🐱', '\x1b', '\x7f', '\x01');
const word = fc.string({ unit: fc.oneof({ arbitrary: nasty, weight: 2 }, { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), weight: 3 }), maxLength: 24 })
  .map((s) => s.replace(/\0/g, ''));
const argvArb = fc.array(word, { minLength: 0, maxLength: 8 });

test('property: 500 random argv round-trip byte-exact through sshd via printf', async () => {
  await fc.assert(fc.asyncProperty(argvArb, async (args) => {
    const r = await collect(conn.exec({ argv: ['printf', '%s\\0', ...args] }));
    assert.deepEqual(r.exit, { exitCode: 0, signal: null });
    // printf with no arguments still prints the format once, i.e. one empty field.
    const expected = Buffer.from((args.length ? args : ['']).map((a) => `${a}\0`).join(''), 'utf8');
    assert.ok(r.out.equals(expected), `argv ${JSON.stringify(args)} came back as ${JSON.stringify(r.out.toString('utf8'))}`);
  }), { numRuns: 500 });
});

test('exit codes and stderr come back', async () => {
  for (const code of [0, 1, 2, 42, 127, 255]) {
    const r = await collect(conn.exec({ argv: ['sh', '-c', `echo oops >&2; exit ${code}`] }));
    assert.deepEqual(r.exit, { exitCode: code, signal: null });
    assert.equal(r.err.toString(), 'oops\n');
  }
  const missing = await collect(conn.exec({ argv: ['/no/such/binary'] }));
  assert.equal(missing.exit.exitCode, 127);
});

test('stdin goes through cat unchanged, binary included, and large output respects flow control', async () => {
  const input = Buffer.concat([randomBytes(300_000), Buffer.from('\0\n\xff tail')]);
  const r = await collect(conn.exec({ argv: ['cat'] }), input);
  assert.deepEqual(r.exit, { exitCode: 0, signal: null });
  assert.ok(r.out.equals(input));
  const big = await collect(conn.exec({ argv: ['head', '-c', '5000000', '/dev/zero'] }));
  assert.equal(big.out.length, 5_000_000);
});

test('env, cwd and a non-root user', async () => {
  const r = await collect(conn.exec({ argv: ['sh', '-c', 'echo "$(id -un) $PWD $A"'], env: { A: "x'$(y)" }, cwd: '/tmp' }));
  assert.equal(r.out.toString(), "root /tmp x'$(y)\n");
  const u = await collect(conn.exec({ argv: ['sh', '-c', 'echo "$(id -un) $HOME $PWD"'], user: 'user' }));
  assert.equal(u.out.toString(), 'user /home/user /home/user\n');
});

test('kill delivers the signal and exited reports it', async () => {
  for (const sig of ['SIGTERM', 'SIGKILL', 'SIGINT'] as const) {
    const p = conn.exec({ argv: ['sleep', '60'] });
    p.stdout.resume(); p.stderr.resume();
    await new Promise((res) => setTimeout(res, 200));
    p.kill(sig);
    assert.deepEqual(await p.exited, { exitCode: null, signal: sig });
  }
  // A handled signal is delivered exactly once.
  const p = conn.exec({ argv: ['python3', '-u', '-c',
    'import signal,sys,time\nn=0\ndef h(*a):\n  global n; n+=1\nsignal.signal(signal.SIGUSR1,h)\nprint("ready",flush=True)\ntime.sleep(1)\nprint(n)'] });
  const out: Buffer[] = [];
  p.stdout.on('data', (b: Buffer) => { out.push(b); if (Buffer.concat(out).toString() === 'ready\n') p.kill('SIGUSR1'); });
  p.stderr.resume();
  assert.deepEqual(await p.exited, { exitCode: 0, signal: null });
  assert.equal(Buffer.concat(out).toString(), 'ready\n1\n');
});

test('parallel execs share one connection', async () => {
  const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => collect(conn.exec({ argv: ['echo', String(i)] }))));
  rs.forEach((r, i) => assert.equal(r.out.toString(), `${i}\n`));
});

test('a dropped connection fails the exec in flight clearly, and the next exec reconnects', async () => {
  const inflight = conn.exec({ argv: ['sleep', '30'] });
  inflight.stdout.resume(); inflight.stderr.resume();
  await new Promise((res) => setTimeout(res, 200));
  // Kill this connection's sshd process from inside (the parent of the exec'd shell): a real drop.
  const killer = conn.exec({ argv: ['sh', '-c', 'kill -9 $PPID'] });
  killer.stdout.resume(); killer.stderr.resume();
  await assert.rejects(inflight.exited, (e: unknown) =>
    e instanceof CoppiceError && e.code === 'backend_failed' && /connection lost before the command exited/.test(e.message));
  await killer.exited.catch(() => {});
  const again = await collect(conn.exec({ argv: ['echo', 'back'] }));
  assert.equal(again.out.toString(), 'back\n');

  // The same after the socket is destroyed from our side.
  conn.disconnect();
  assert.equal(conn.connected, false);
  assert.equal((await collect(conn.exec({ argv: ['echo', 'again'] }))).out.toString(), 'again\n');
});

test('a closed connection refuses execs', async () => {
  const c = new GuestConnection({ host: ip, keyPath: KEY });
  await c.connect();
  c.close();
  await assert.rejects(c.exec({ argv: ['true'] }).exited, /connection closed/);
});

test('connect to a port nobody answers fails within the ready timeout', async () => {
  const c = new GuestConnection({ host: ip, port: 2222, keyPath: KEY, readyTimeoutMs: 1000 });
  await assert.rejects(c.connect(), (e: unknown) => e instanceof CoppiceError && /ECONNREFUSED|Timed out/.test(e.message));
});

test('timing: exec on the reused connection vs a fresh ssh invocation (medians of 20)', async (t) => {
  const reused: number[] = [];
  const fresh: number[] = [];
  for (let i = 0; i < 20; i++) {
    let t0 = performance.now();
    await collect(conn.exec({ argv: ['true'] }));
    reused.push(performance.now() - t0);
    t0 = performance.now();
    await run('ssh', ['-F', '/dev/null', '-i', KEY, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'ConnectTimeout=5', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', `root@${ip}`, '--', 'true']);
    fresh.push(performance.now() - t0);
  }
  t.diagnostic(`exec round trip: reused ssh2 connection ${median(reused).toFixed(1)} ms, fresh ssh ${median(fresh).toFixed(1)} ms`);
  assert.ok(median(reused) < median(fresh));
});

test('kill right after exec (before the shell has started) still lands', async () => {
  for (let i = 0; i < 5; i++) {
    const p = conn.exec({ argv: ['sleep', '60'] });
    p.stdout.resume(); p.stderr.resume();
    p.kill('SIGTERM');
    assert.deepEqual(await p.exited, { exitCode: null, signal: 'SIGTERM' });
  }
});
