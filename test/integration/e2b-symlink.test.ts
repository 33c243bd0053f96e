// File access through the E2B surface never follows a symlink out of the sandbox (jail backend).
// The sandbox plants symlinks to host paths (/etc/shadow, a host directory holding a readable
// secret, a host file it would like to overwrite) and then reads, writes, lists, stats, moves and
// removes through them with the real `e2b` SDK, as its user and as root. Every answer must be the
// sandbox's own view (or an error); the host's files must be untouched and never disclosed.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Sandbox } from 'e2b';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
let sbx: Sandbox | undefined;
let opts: { apiKey: string; apiUrl: string; sandboxUrl: string };

// Host fixtures, world-readable so that only the sandbox boundary (not permissions) protects them.
const hostDir = mkdtempSync('/tmp/coppice-e2b-host-');
const secret = `HOST-SECRET-${randomBytes(8).toString('hex')}`;
const hostSecret = join(hostDir, 'secret.txt');
const hostVictim = join(hostDir, 'victim.txt');
const hostShadow = readFileSync('/etc/shadow', 'utf8');

const root = { user: 'root' as const };
const H = '/home/user';

/** Run a shell command in the sandbox as root and insist it worked. */
async function sh(cmd: string): Promise<string> {
  return (await sbx!.commands.run(cmd, { user: 'root' })).stdout;
}

/** Any bytes that came back must not be the host's. */
function assertNotHost(value: unknown): void {
  const text = typeof value === 'string' ? value : Buffer.from(value as Uint8Array).toString('utf8');
  assert.ok(!text.includes(secret), 'the host secret leaked');
  assert.ok(!(hostShadow.length > 0 && text === hostShadow), "the host's /etc/shadow leaked");
}

function hostUntouched(): void {
  assert.equal(readFileSync(hostSecret, 'utf8'), secret, 'host secret unchanged');
  assert.equal(readFileSync(hostVictim, 'utf8'), 'victim', 'host victim unchanged');
  assert.deepEqual(readdirSync(hostDir).sort(), ['secret.txt', 'victim.txt'], 'nothing created in or removed from the host dir');
}

before(async () => {
  chmodSync(hostDir, 0o755);
  writeFileSync(hostSecret, secret, { mode: 0o644 });
  writeFileSync(hostVictim, 'victim', { mode: 0o666 });
  gw = await startTestGateway();
  opts = { apiKey: gw.key, apiUrl: gw.url, sandboxUrl: gw.url };
  sbx = await Sandbox.create('base', opts);
  // The planted links, owned by the sandbox user, as an attacker in the sandbox would make them.
  await sbx.commands.run(
    [
      `ln -s /etc/shadow ${H}/shadow`,
      `ln -s ${hostSecret} ${H}/secret-link`,
      `ln -s ${hostDir} ${H}/hostdir`,
      `ln -s ${hostVictim} ${H}/victim-link`,
      `ln -s / ${H}/rootlink`,
      `ln -s /proc/1/root ${H}/proc-root`,
    ].join(' && '),
  );
});

after(async () => {
  if (sbx) await sbx.kill().catch(() => false);
  await gw?.close();
  rmSync(hostDir, { recursive: true, force: true });
});

test('read: a link to /etc/shadow gives the sandbox\'s own file (or permission denied), never the host\'s', async () => {
  await assert.rejects(sbx!.files.read(`${H}/shadow`), /permission denied/);
  const asRoot = await sbx!.files.read(`${H}/shadow`, root);
  assertNotHost(asRoot);
  assert.equal(asRoot, await sh('cat /etc/shadow'), "it is the sandbox's /etc/shadow");
  hostUntouched();
});

test('read: links to a host file or directory do not reach the host', async () => {
  for (const user of [undefined, 'root']) {
    await assert.rejects(sbx!.files.read(`${H}/secret-link`, { user }), /no such file|dangling/);
    await assert.rejects(sbx!.files.read(`${H}/hostdir/secret.txt`, { user }), /no such file/);
    await assert.rejects(sbx!.files.read(`${H}/rootlink${hostSecret}`, { user }), /no such file/);
    await assert.rejects(sbx!.files.read(`${H}/proc-root${hostSecret}`, { user }), /no such file|permission/);
    await assert.rejects(sbx!.files.read(`/../../..${hostSecret}`, { user }), /no such file/);
  }
  // Give the sandbox a file at the very path of the host's: the link now finds the sandbox's one.
  await sh(`mkdir -p ${hostDir} && printf sandbox-side > ${hostSecret} && chmod 644 ${hostSecret}`);
  assert.equal(await sbx!.files.read(`${H}/secret-link`), 'sandbox-side');
  assert.equal(await sbx!.files.read(`${H}/hostdir/secret.txt`), 'sandbox-side');
  await sh(`rm -rf ${hostDir}`);
  hostUntouched();
});

test('write: through a link to a host file or directory, only the sandbox changes', async () => {
  for (const user of [undefined, 'root']) {
    await sbx!.files.write(`${H}/victim-link`, 'PWNED', { user }).catch(() => undefined);
    await sbx!.files.write(`${H}/hostdir/planted.txt`, 'PWNED', { user }).catch(() => undefined);
    await sbx!.files.write(`${H}/rootlink${hostDir}/planted2.txt`, 'PWNED', { user }).catch(() => undefined);
    await sbx!.files.write([{ path: `${H}/secret-link`, data: 'PWNED' }], { user }).catch(() => undefined);
    hostUntouched();
  }
  // As root the writes landed — in the sandbox, at the links' targets as the sandbox sees them.
  assert.equal(await sh(`cat ${hostVictim}`), 'PWNED');
  assert.equal(await sh(`cat ${hostDir}/planted.txt`), 'PWNED');
  await sh(`rm -rf ${hostDir}`);
  hostUntouched();
});

test('list and stat: a link to a host directory lists nothing of the host', async () => {
  await assert.rejects(sbx!.files.list(`${H}/hostdir`), /no such file/);
  await assert.rejects(sbx!.files.list(`${H}/rootlink${hostDir}`, root), /no such file/);
  const home = await sbx!.files.list(H);
  const link = home.find((e) => e.name === 'hostdir');
  assert.equal(link?.type, 'symlink');
  assert.equal(link?.symlinkTarget, hostDir);
  // The whole sandbox, recursively from /tmp through the root link: not one host name.
  const tmp = await sbx!.files.list(`${H}/rootlink/tmp`, { ...root, depth: 3 });
  assert.ok(!tmp.some((e) => e.path.includes(hostDir.split('/').pop()!)), 'no host entry under the sandbox /tmp');
  const info = await sbx!.files.getInfo(`${H}/secret-link`);
  assert.equal(info.type, 'symlink');
  assert.equal(info.symlinkTarget, hostSecret);
  await assert.rejects(sbx!.files.getInfo(`${H}/hostdir/secret.txt`), /no such file/);
  assert.equal(await sbx!.files.exists(`${H}/hostdir/secret.txt`), false);
  hostUntouched();
});

test('move: into, out of and over links to host paths stays inside the sandbox', async () => {
  for (const user of [undefined, 'root']) {
    await sbx!.files.write(`${H}/to-move.txt`, 'moving', { user: 'user' });
    // Into a linked host directory: lands in the sandbox's path of that name (as root) or fails.
    await sbx!.files.rename(`${H}/to-move.txt`, `${H}/hostdir/moved.txt`, { user }).catch(() => undefined);
    hostUntouched();
    // Out of a linked host directory: there is nothing of the host to take.
    await assert.rejects(sbx!.files.rename(`${H}/hostdir/secret.txt`, `${H}/stolen.txt`, { user }));
    assert.equal(await sbx!.files.exists(`${H}/stolen.txt`), false);
    // Over a link to a host file: the link itself is replaced, the host file stays.
    await sbx!.files.write(`${H}/over.txt`, 'over', { user: 'user' });
    await sbx!.files.rename(`${H}/over.txt`, `${H}/victim-link`, { user });
    assert.equal(await sbx!.files.read(`${H}/victim-link`), 'over');
    await sh(`ln -sfn ${hostVictim} ${H}/victim-link && rm -rf ${hostDir} ${H}/to-move.txt`);
    hostUntouched();
  }
});

test('remove: through links removes nothing of the host', async () => {
  for (const user of [undefined, 'root']) {
    // Not there in the sandbox's view: nothing to remove (a success, as E2B), and nothing of the host goes.
    await sbx!.files.remove(`${H}/hostdir/secret.txt`, { user });
    await sbx!.files.remove(`${H}/rootlink${hostVictim}`, { user });
    hostUntouched();
  }
  // Removing a link removes the link, not its target.
  await sbx!.files.remove(`${H}/secret-link`);
  assert.equal(await sbx!.files.exists(`${H}/secret-link`), false);
  await sbx!.files.remove(`${H}/hostdir`, root);
  assert.equal(await sbx!.files.exists(`${H}/hostdir`), false);
  hostUntouched();
  assert.ok(existsSync(hostDir));
});

test('the sandbox user cannot use root-only paths through links either', async () => {
  await sh('mkdir -p /root/private && echo root-only > /root/private/f && chmod 700 /root');
  await sbx!.commands.run(`ln -s /root/private ${H}/rootpriv`);
  await assert.rejects(sbx!.files.read(`${H}/rootpriv/f`), /permission denied|no such file/);
  await assert.rejects(sbx!.files.list(`${H}/rootpriv`), /permission denied|no such file/);
  await assert.rejects(sbx!.files.remove(`${H}/rootpriv/f`), /permission denied/i); // rm -f still fails on EACCES
  assert.equal(await sh('cat /root/private/f'), 'root-only\n');
  mkdirSync(join(hostDir, 'x'), { recursive: true });
  rmSync(join(hostDir, 'x'), { recursive: true });
  hostUntouched();
});
