// The `e2b` SDK against a bhyve-backend sandbox: an in-process gateway whose bhyve backend drives
// the Linux pool-ctl (guests: private mount/pid namespaces on an overlay of the template image,
// reached over real SSH), so the envd surface runs commands and file helpers over the SSH shim.
// Checks the same contract as the jail suite, more briefly: default user, in-sandbox PIDs,
// stdin/kill, files, and a symlink that must not lead to the host.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { CommandExitError, Sandbox } from 'e2b';
import { platformJailBackend, startApp, type App } from '../../src/app.ts';
import { createBhyveBackend } from '../../src/backends/bhyve/backend.ts';
import { PoolCtlClient } from '../../src/backends/bhyve/pool-ctl.ts';
import { parseServeArgs } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { TEMPLATES_ROOT } from '../helpers/gateway.ts';
import { POOL_CTL, BUILD_IMAGE, IMAGES, BASE, KEY, TEMPLATE } from '../helpers/bhyve-env.ts';

const run = promisify(execFile);

const tag = randomBytes(2).toString('hex');
const bridge = `cpe${tag}br`;
const dir = mkdtempSync(join(tmpdir(), 'coppice-e2b-bhyve-'));
const poolState = join(dir, 'pool');
const net3 = (() => {
  const used = execFileSync('ip', ['-4', '-o', 'addr']).toString() + execFileSync('ip', ['-4', 'route']).toString();
  for (;;) {
    const n = `10.98.${1 + Math.floor(Math.random() * 254)}`;
    if (!used.includes(`${n}.`)) return n;
  }
})();
const subnet = `${net3}.0/24`;
const poolEnv = {
  COPPICE_POOL_CTL_STATE: poolState,
  COPPICE_BHYVE_TEMPLATES_ROOT: IMAGES,
  COPPICE_POOL_CTL_SUBNET: subnet,
  COPPICE_POOL_CTL_BRIDGE: bridge,
  COPPICE_POOL_CTL_PREFIX: `cpe${tag}`,
};

let app: App | undefined;
let sbx: Sandbox | undefined;
let opts: { apiKey: string; apiUrl: string; sandboxUrl: string };

before(async () => {
  await run(BUILD_IMAGE, [TEMPLATE, IMAGES, BASE], { timeout: 600_000 });
  const config = parseServeArgs(['--listen', '127.0.0.1:0', '--state-dir', join(dir, 'state'), '--templates-root', TEMPLATES_ROOT, '--bhyve-templates-root', IMAGES]);
  const logger = createLogger(process.env.COPPICE_TEST_LOG ?? 'silent');
  const key = `test-${randomBytes(6).toString('hex')}`;
  const bhyve = createBhyveBackend({ poolCtl: { path: POOL_CTL, subnet, env: poolEnv }, keyPath: KEY });
  app = await startApp(config, { logger, apiKey: key, backends: { jail: await platformJailBackend(config, logger), bhyve } });
  for (let i = 0; i < 600 && app.gateway.lifecycle === 'starting'; i++) await new Promise((r) => setTimeout(r, 10));
  await app.gateway.warmPool(TEMPLATE, 1);
  opts = { apiKey: key, apiUrl: app.url, sandboxUrl: app.url };
});

after(async () => {
  if (sbx) await sbx.kill().catch(() => false);
  await app?.close();
  const ctl = new PoolCtlClient({ path: POOL_CTL, subnet, env: poolEnv });
  try {
    for (const v of (await ctl.list()).vms) await ctl.release(v.vm).catch(() => {});
    await ctl.drain(TEMPLATE);
  } catch {
    /* forced part below */
  }
  try {
    execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  } catch {
    /* gone */
  }
  try {
    execFileSync('umount', [join(poolState, 'templates', TEMPLATE, 'mnt')], { stdio: 'ignore' });
  } catch {
    /* gone */
  }
  rmSync(dir, { recursive: true, force: true });
});

test('e2b SDK on a bhyve sandbox: commands, PIDs, stdin, files, symlinks stay inside', async () => {
  sbx = await Sandbox.create(TEMPLATE, opts);
  assert.equal((await sbx.getInfo()).templateId, TEMPLATE);

  // E2B's default user where the image has one; root on request.
  const who = await sbx.commands.run('id -un; pwd; echo "$FOO"', { envs: { FOO: 'bar' } });
  assert.equal(who.stdout, 'user\n/home/user\nbar\n');
  assert.equal((await sbx.commands.run('id -un', { user: 'root' })).stdout, 'root\n');
  await assert.rejects(sbx.commands.run('exit 7'), (e: unknown) => e instanceof CommandExitError && e.exitCode === 7);

  // Streaming, a real in-guest PID, stdin, kill.
  const out: string[] = [];
  const cat = await sbx.commands.run('echo "pid=$$"; exec cat', { background: true, stdin: true, onStdout: (d) => void out.push(d) });
  assert.ok(cat.pid > 1);
  assert.match((await sbx.commands.run(`kill -0 ${cat.pid} && tr '\\0' ' ' < /proc/${cat.pid}/cmdline`)).stdout, /^cat/);
  assert.ok((await sbx.commands.list()).some((p) => p.pid === cat.pid));
  await cat.sendStdin('over ssh\n');
  for (let i = 0; i < 100 && !out.join('').includes('over ssh'); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(out.join(''), `pid=${cat.pid}\nover ssh\n`);
  assert.equal(await cat.kill(), true);
  await assert.rejects(cat.wait(), CommandExitError);

  // Files, as the user, binary-safe.
  const bytes = new Uint8Array(256).map((_, i) => 255 - i);
  await sbx.files.write('/home/user/d/bin.dat', bytes.buffer);
  assert.deepEqual(Buffer.from(await sbx.files.read('/home/user/d/bin.dat', { format: 'bytes' })), Buffer.from(bytes));
  assert.equal((await sbx.files.getInfo('/home/user/d/bin.dat')).owner, 'user');
  assert.deepEqual((await sbx.files.list('/home/user/d')).map((e) => e.name), ['bin.dat']);
  assert.equal(await sbx.files.makeDir('/home/user/e'), true);
  await sbx.files.rename('/home/user/d/bin.dat', '/home/user/e/moved.dat');
  assert.equal(await sbx.files.exists('/home/user/e/moved.dat'), true);
  await sbx.files.remove('/home/user/e');
  assert.equal(await sbx.files.exists('/home/user/e'), false);

  // A link to /etc/shadow: the guest's own file (root) or permission denied (user), never the host's.
  await sbx.commands.run('ln -s /etc/shadow /home/user/shadow');
  await assert.rejects(sbx.files.read('/home/user/shadow'), /permission denied/);
  const guestShadow = await sbx.files.read('/home/user/shadow', { user: 'root' });
  assert.notEqual(guestShadow, readFileSync('/etc/shadow', 'utf8'));
  assert.equal(guestShadow, (await sbx.commands.run('cat /etc/shadow', { user: 'root' })).stdout);

  assert.equal(await sbx.kill(), true);
  sbx = undefined;
});
