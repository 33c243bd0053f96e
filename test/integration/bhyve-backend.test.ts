// createBhyveBackend over the real Linux pool-ctl and real sshd guests, plus the failures the
// gateway must survive (notes/pool-ctl-contract.md), injected by a wrapper pool-ctl this test
// writes: each must end in a clear CoppiceError with the guest released and the pool count honest.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import { CoppiceError } from '../../src/errors.ts';
import { DEFAULT_LIMITS } from '../../src/backends/types.ts';
import { httpStatusOf } from '../../src/http/errors.ts';
import { createBhyveBackend, type BhyveBackend } from '../../src/backends/bhyve/backend.ts';
import { PoolCtlClient } from '../../src/backends/bhyve/pool-ctl.ts';
import type { CreateSpec, ExecProcess } from '../../src/backends/types.ts';
import { POOL_CTL, BUILD_IMAGE, IMAGES, BASE, KEY, TEMPLATE } from '../helpers/bhyve-env.ts';

const run = promisify(execFile);

const tag = randomBytes(2).toString('hex');
const bridge = `cpk${tag}br`;
const dir = mkdtempSync(join(tmpdir(), 'coppice-bhyve-backend-test-'));
const state = join(dir, 'state');
const net3 = (() => {
  const used = execFileSync('ip', ['-4', '-o', 'addr']).toString() + execFileSync('ip', ['-4', 'route']).toString();
  for (;;) { const n = `10.99.${1 + Math.floor(Math.random() * 254)}`; if (!used.includes(`${n}.`)) return n; }
})();
const subnet = `${net3}.0/24`;
const poolEnv = {
  COPPICE_POOL_CTL_STATE: state, COPPICE_BHYVE_TEMPLATES_ROOT: IMAGES,
  COPPICE_POOL_CTL_SUBNET: subnet, COPPICE_POOL_CTL_BRIDGE: bridge, COPPICE_POOL_CTL_PREFIX: `cpk${tag}`,
};

// The misbehaving pool-ctl: on checkout, does what COPPICE_TEST_FAULT asks; everything else is real.
const wrapper = join(dir, 'faulty-pool-ctl.sh');
writeFileSync(wrapper, `#!/bin/bash
real=${JSON.stringify(POOL_CTL)}
if [ "$1" = checkout ]; then
  case \${COPPICE_TEST_FAULT:-} in
    nonzero) echo "pool-ctl: simulated breakage" >&2; exit 42 ;;
    garbage) "$real" "$@" >/dev/null; echo "this is not json"; exit 0 ;;
    badip) out=$("$real" "$@"); echo "\${out/\\"ip\\":\\"/\\"ip\\":\\"1}" ; exit 0 ;;
    hang) "$real" "$@" >/dev/null; echo "pool-ctl: hanging now" >&2; sleep 300; exit 0 ;;
    deadsshd|frozensshd)
      out=$("$real" "$@"); vm=\${out#*\\"vm\\":\\"}; vm=\${vm%%\\"*}
      pid=$(cat "$COPPICE_POOL_CTL_STATE/vms/$vm/pid")
      if [ "$COPPICE_TEST_FAULT" = deadsshd ]; then kill -KILL "$pid"; else kill -STOP "$pid"; fi
      echo "$out"; exit 0 ;;
  esac
fi
exec "$real" "$@"
`);
chmodSync(wrapper, 0o755);

const real = new PoolCtlClient({ path: POOL_CTL, subnet, env: poolEnv });
const backend = createBhyveBackend({ poolCtl: real, keyPath: KEY });

function faulty(fault: string): BhyveBackend {
  return createBhyveBackend({
    poolCtl: { path: wrapper, subnet, env: { ...poolEnv, COPPICE_TEST_FAULT: fault }, timeouts: { checkout: 1500 } },
    keyPath: KEY,
    sshReadyTimeoutMs: 1500,
  });
}

const spec = (id: string): CreateSpec => ({
  id, template: { name: TEMPLATE, path: join(IMAGES, `${TEMPLATE}.img`), backend: 'bhyve' }, limits: DEFAULT_LIMITS,
});

async function output(p: ExecProcess): Promise<{ out: string; code: number | null }> {
  let out = '';
  p.stdout.on('data', (b: Buffer) => (out += b));
  p.stderr.on('data', (b: Buffer) => (out += b));
  p.stdin.end();
  const { exitCode } = await p.exited;
  return { out, code: exitCode };
}

before(async () => {
  await run(BUILD_IMAGE, [TEMPLATE, IMAGES, BASE], { timeout: 600_000 });
});

after(async () => {
  await backend.close();
  try {
    for (const v of (await real.list()).vms) await real.release(v.vm).catch(() => {});
    await real.drain(TEMPLATE);
  } catch { /* forced part below */ }
  try { execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' }); } catch { /* gone */ }
  try { execFileSync('umount', [join(state, 'templates', TEMPLATE, 'mnt')], { stdio: 'ignore' }); } catch { /* gone */ }
  rmSync(dir, { recursive: true, force: true });
});

test('create -> exec -> pause/resume -> destroy', async (t) => {
  const progress: string[] = [];
  const w = await backend.warm(TEMPLATE, 2, (l) => progress.push(l));
  assert.deepEqual(w, { template: TEMPLATE, available: 2 });
  assert.ok(progress.some((l) => /ready/.test(l)), `progress lines: ${progress.join(' | ')}`);

  let checkoutNs = 0n;
  const b = createBhyveBackend({ poolCtl: real, keyPath: KEY, onCheckout: (tpl, ns) => { assert.equal(tpl, TEMPLATE); checkoutNs = ns; } });
  t.after(() => b.close());
  const h = await b.create(spec('sbxbackend1'));
  t.diagnostic(`checkout ${(Number(checkoutNs) / 1e6).toFixed(1)} ms`);
  assert.ok(checkoutNs > 0n);
  assert.equal(h.backend, 'bhyve');
  assert.ok(h.ip.startsWith(`${net3}.`));
  assert.equal(typeof h.data.vm, 'string');

  assert.deepEqual(await output(b.exec(h, { argv: ['python3', '-c', 'print(6*7)'] })), { out: '42\n', code: 0 });
  assert.deepEqual(await output(b.exec(h, { argv: ['id', '-un'] })), { out: 'root\n', code: 0 });
  assert.deepEqual(await output(b.exec(h, { argv: ['id', '-un'], user: 'user' })), { out: 'user\n', code: 0 });

  assert.deepEqual(await b.listLive(), [{ id: 'sbxbackend1', state: 'running', data: { vm: h.data.vm } }]);
  await b.pause(h);
  assert.deepEqual(await b.listLive(), [{ id: 'sbxbackend1', state: 'paused', data: { vm: h.data.vm } }]);
  // The connection is kept across pause: an exec sent now waits for resume, then completes.
  const late = output(b.exec(h, { argv: ['echo', 'after'] }));
  let done = false;
  void late.then(() => (done = true));
  await new Promise((res) => setTimeout(res, 500));
  assert.equal(done, false);
  await b.resume(h);
  assert.deepEqual(await late, { out: 'after\n', code: 0 });
  assert.deepEqual(await output(b.exec(h, { argv: ['echo', 'still'] })), { out: 'still\n', code: 0 });

  await b.destroy(h);
  await b.destroy(h); // idempotent
  assert.deepEqual(await b.listLive(), []);
  assert.deepEqual((await real.list()).templates[TEMPLATE], { available: 1, in_use: 0 });
  await b.close();
});

/** After a failed create: no guest in use, and the remaining pool is still available. */
async function assertNoLeak(available: number) {
  const l = await real.list();
  assert.deepEqual(l.vms.filter((v) => v.state !== 'available'), [], `leaked: ${JSON.stringify(l.vms)}`);
  assert.deepEqual(l.templates[TEMPLATE], { available, in_use: 0 });
}

const faults: Array<[string, RegExp, string]> = [
  ['nonzero', /pool-ctl checkout python-bhyve failed \(exit 42\): pool-ctl: simulated breakage/, 'backend_failed'],
  ['garbage', /pool-ctl checkout printed "this is not json", not JSON/, 'backend_failed'],
  ['badip', new RegExp(`pool-ctl checkout guest address 1${net3.replace(/\./g, '\\.')}\\.\\d+ is not inside ${subnet.replace(/\./g, '\\.')}|breaks the contract`), 'backend_failed'],
  ['hang', /pool-ctl checkout python-bhyve timed out after 1500 ms \(killed\): pool-ctl: hanging now/, 'timeout'],
  ['deadsshd', /bhyve create sbxfault-deadsshd: guest \S+ \(\S+\) of python-bhyve did not answer SSH: .*(ECONNREFUSED|ECONNRESET)/, 'backend_failed'],
  ['frozensshd', /bhyve create sbxfault-frozensshd: guest \S+ \(\S+\) of python-bhyve did not answer SSH: .*Timed out/, 'backend_failed'],
];

for (const [fault, message, code] of faults) {
  test(`fault: ${fault} -> clear CoppiceError, guest released`, async (t) => {
    await backend.warm(TEMPLATE, 2);
    const b = faulty(fault);
    t.after(() => b.close());
    const t0 = performance.now();
    await assert.rejects(b.create(spec(`sbxfault-${fault}`)), (e: unknown) => {
      assert.ok(e instanceof CoppiceError, `not a CoppiceError: ${e}`);
      assert.equal(e.code, code, e.message);
      assert.match(e.message, message);
      return true;
    });
    assert.ok(performance.now() - t0 < 10_000);
    // The faults that took a guest gave it back; "nonzero" never took one.
    await assertNoLeak(fault === 'nonzero' ? 2 : 1);
    assert.deepEqual(await b.listLive(), []);
    await b.close();
  });
}

test('fault: empty pool -> not_ready (503), nothing taken', async () => {
  await real.drain(TEMPLATE);
  await assert.rejects(backend.create(spec('sbxempty')), (e: unknown) =>
    e instanceof CoppiceError && e.code === 'not_ready' && httpStatusOf(e.code) === 503 && /pool empty/.test(e.message));
  await assertNoLeak(0);
});

test('pool-ctl client: contract violations from list are rejected', async () => {
  const liar = join(dir, 'liar.sh');
  writeFileSync(liar, `#!/bin/sh\necho '{"templates":{"x":{"available":-1,"in_use":0}},"vms":[]}'\n`);
  chmodSync(liar, 0o755);
  await assert.rejects(new PoolCtlClient({ path: liar }).list(), /pool-ctl list printed JSON that breaks the contract \(templates\.x\.available/);
  await assert.rejects(new PoolCtlClient({ path: join(dir, 'missing') }).list(), /pool-ctl list: cannot run/);
  // A hung pool-ctl is killed with everything it started (its process group), on abort or deadline.
  const slow = join(dir, 'slow.sh');
  const pids = join(dir, 'slow.pids');
  writeFileSync(slow, `#!/bin/sh\nsleep 60 &\necho "$$ $!" > ${pids}\nwait\n`);
  chmodSync(slow, 0o755);
  const gone = (pid: number) => {
    try { return /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return true; }
  };
  const ac = new AbortController();
  const p = new PoolCtlClient({ path: slow }).list(ac.signal);
  setTimeout(() => ac.abort(), 300);
  await assert.rejects(p, (e: unknown) => e instanceof CoppiceError && /pool-ctl list --json: aborted \(killed\)/.test(e.message));
  for (const pid of readFileSync(pids, 'utf8').trim().split(' ').map(Number)) assert.ok(gone(pid), `pid ${pid} survived`);
  await assert.rejects(new PoolCtlClient({ path: slow, timeouts: { list: 300 } }).list(), (e: unknown) =>
    e instanceof CoppiceError && e.code === 'timeout' && /pool-ctl list --json timed out after 300 ms \(killed\)/.test(e.message));
  for (const pid of readFileSync(pids, 'utf8').trim().split(' ').map(Number)) assert.ok(gone(pid), `pid ${pid} survived`);
});
