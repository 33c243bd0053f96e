// Template discovery on real directories (src/registry/scan.ts) and the registry actor
// (machines/registry.ts) answering RELOAD from what is on disk.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { createActor, fromPromise } from 'xstate';
import { registryMachine, type ScanResult } from '../../machines/registry.ts';
import type { Reply } from '../../machines/types.ts';
import { isValidTemplateName, scanTemplates, type ScanRoots } from '../../src/registry/scan.ts';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Gateway } from '../../src/actors/gateway.ts';
import { FakeBackend } from '../helpers/fake-backend.ts';

async function tempRoot(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'coppice-scan-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const names = (r: ScanResult) => r.templates.map((x) => `${x.name}:${x.backend}`);

async function flush(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (cond()) return;
    await new Promise<void>((r) => setImmediate(r));
  }
  assert.fail(`never happened: ${what}`);
}

describe('scanTemplates: the jail pass', () => {
  test('finds every <name>-template directory, with its path, sorted by name', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, 'python-template'));
    await mkdir(join(root, 'base-template'));
    await mkdir(join(root, 'node_20.x-template'));
    const r = await scanTemplates({ templatesRoot: root });
    assert.deepEqual(r.templates, [
      { name: 'base', path: join(root, 'base-template'), backend: 'jail' },
      { name: 'node_20.x', path: join(root, 'node_20.x-template'), backend: 'jail' },
      { name: 'python', path: join(root, 'python-template'), backend: 'jail' },
    ]);
    assert.deepEqual(r.warnings, []);
  });

  test('ignores plain files named like templates and directories without the suffix', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, 'base-template'));
    await writeFile(join(root, 'file-template'), 'not a directory');
    await mkdir(join(root, 'base'));
    await mkdir(join(root, 'base-template.bak'));
    await mkdir(join(root, 'templates'));
    await writeFile(join(root, 'vm.img'), ''); // a bhyve image in the jail root is not a jail template
    const r = await scanTemplates({ templatesRoot: root });
    assert.deepEqual(names(r), ['base:jail']);
  });

  test('skips invalid names: dot-dot, spaces, an empty name, a leading dot or dash', async (t) => {
    const root = await tempRoot(t);
    for (const d of ['..-template', 'a..b-template', 'my template-template', '-template', '.hidden-template', '-dash-template', 'ok-template']) {
      await mkdir(join(root, d));
    }
    const r = await scanTemplates({ templatesRoot: root });
    assert.deepEqual(names(r), ['ok:jail']);
    for (const bad of ['..', 'a..b', 'my template', '', '.hidden', '-dash', 'a/b']) assert.equal(isValidTemplateName(bad), false, bad);
    for (const good of ['ok', 'node_20.x', 'Py3-slim']) assert.equal(isValidTemplateName(good), true, good);
  });

  test('a missing root is an empty registry, not an error', async (t) => {
    const root = await tempRoot(t);
    const r = await scanTemplates({ templatesRoot: join(root, 'does-not-exist'), bhyveTemplatesRoot: join(root, 'nor-this') });
    assert.deepEqual(r, { templates: [], warnings: [] });
  });

  test('a root that is not readable as a directory is an error, not an empty registry', async (t) => {
    const root = await tempRoot(t);
    await writeFile(join(root, 'afile'), '');
    await assert.rejects(scanTemplates({ templatesRoot: join(root, 'afile') }), /ENOTDIR/);
  });
});

describe('scanTemplates: the bhyve pass', () => {
  test('runs only when the bhyve root is given', async (t) => {
    const jail = await tempRoot(t);
    const bhyve = await tempRoot(t);
    await mkdir(join(jail, 'base-template'));
    await writeFile(join(bhyve, 'freebsd.img'), '');
    assert.deepEqual(names(await scanTemplates({ templatesRoot: jail })), ['base:jail']);
    const r = await scanTemplates({ templatesRoot: jail, bhyveTemplatesRoot: bhyve });
    assert.deepEqual(r.templates, [
      { name: 'base', path: join(jail, 'base-template'), backend: 'jail' },
      { name: 'freebsd', path: join(bhyve, 'freebsd.img'), backend: 'bhyve' },
    ]);
  });

  test('takes <name>.img files only: not directories, not other extensions, not invalid names', async (t) => {
    const jail = await tempRoot(t);
    const bhyve = await tempRoot(t);
    await writeFile(join(bhyve, 'ubuntu.img'), '');
    await mkdir(join(bhyve, 'dir.img'));
    await writeFile(join(bhyve, 'disk.qcow2'), '');
    await writeFile(join(bhyve, 'ubuntu.img.partial'), '');
    await writeFile(join(bhyve, '.img'), '');
    await writeFile(join(bhyve, 'two words.img'), '');
    await mkdir(join(bhyve, 'x-template'));
    const r = await scanTemplates({ templatesRoot: jail, bhyveTemplatesRoot: bhyve });
    assert.deepEqual(names(r), ['ubuntu:bhyve']);
  });

  test('a name in both passes: the bhyve entry wins and a warning names it', async (t) => {
    const jail = await tempRoot(t);
    const bhyve = await tempRoot(t);
    await mkdir(join(jail, 'python-template'));
    await mkdir(join(jail, 'base-template'));
    await writeFile(join(bhyve, 'python.img'), '');
    const r = await scanTemplates({ templatesRoot: jail, bhyveTemplatesRoot: bhyve });
    assert.deepEqual(r.templates, [
      { name: 'base', path: join(jail, 'base-template'), backend: 'jail' },
      { name: 'python', path: join(bhyve, 'python.img'), backend: 'bhyve' },
    ]);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0]!, /"python"/);
    assert.match(r.warnings[0]!, /bhyve image wins/);
    assert.ok(r.warnings[0]!.includes(join(jail, 'python-template')), 'the warning says where the jail one is');
  });
});

// The registry actor over the real scan.
function startRegistry(t: TestContext, scan: (roots: ScanRoots) => Promise<ScanResult>, roots: ScanRoots) {
  const actor = createActor(registryMachine.provide({ actors: { scan: fromPromise(() => scan(roots)) } }));
  const replies: Reply[] = [];
  actor.on('reply', (r) => replies.push(r));
  actor.start();
  t.after(() => actor.stop());
  return { actor, replies };
}

const templatesOf = (r: Reply | undefined) => {
  assert.ok(r?.ok, `an ok reply: ${JSON.stringify(r)}`);
  return (r.value as ScanResult).templates.map((x) => x.name);
};

describe('the registry actor', () => {
  test('scans at birth, then RELOAD answers with the list as it is on disk now', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, 'base-template'));
    const { actor, replies } = startRegistry(t, scanTemplates, { templatesRoot: root });
    await until(() => actor.getSnapshot().matches('idle'), 'first scan');
    assert.deepEqual(actor.getSnapshot().context.templates.map((x) => x.name), ['base']);
    assert.equal(typeof actor.getSnapshot().context.scannedAt, 'number');

    await mkdir(join(root, 'python-template'));
    await rmdir(join(root, 'base-template'));
    actor.send({ type: 'RELOAD', reqId: 'r1' });
    assert.ok(actor.getSnapshot().matches('scanning'));
    await until(() => replies.length === 1, 'reply to r1');
    assert.equal(replies[0]!.reqId, 'r1');
    assert.deepEqual(templatesOf(replies[0]), ['python']);
    assert.deepEqual(actor.getSnapshot().context.templates.map((x) => x.name), ['python']);
    assert.ok(actor.getSnapshot().matches('idle'));
  });

  test('RELOADs that arrive during a scan are all answered, once each, by a scan that started after them', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, 'base-template'));
    let gate = Promise.resolve();
    let open = () => {};
    let scans = 0;
    const gated = async (roots: ScanRoots) => {
      scans++;
      await gate;
      return scanTemplates(roots);
    };
    const { actor, replies } = startRegistry(t, gated, { templatesRoot: root });
    await until(() => actor.getSnapshot().matches('idle'), 'first scan');

    gate = new Promise<void>((r) => (open = r));
    actor.send({ type: 'RELOAD', reqId: 'a' });
    actor.send({ type: 'RELOAD', reqId: 'b' });
    actor.send({ type: 'RELOAD', reqId: 'c' });
    await flush();
    assert.equal(replies.length, 0, 'no answer before the scan ends');
    assert.deepEqual(actor.getSnapshot().context.waiters, ['a']);
    assert.deepEqual(actor.getSnapshot().context.later, ['b', 'c'], 'mid-scan RELOADs wait for the next scan');
    const scansBefore = scans;
    open();
    await until(() => replies.length >= 3, 'three replies');
    await flush();
    assert.deepEqual(replies.map((r) => r.reqId), ['a', 'b', 'c']);
    assert.equal(scans - scansBefore, 1, 'one more scan served b and c');
    for (const r of replies) assert.deepEqual(templatesOf(r), ['base']);
    assert.ok(scans >= 2, 'the RELOADs did scan again');
    assert.deepEqual(actor.getSnapshot().context.waiters, []);
  });

  test('RELOADs sent while the first scan runs are answered too', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, 'base-template'));
    const { actor, replies } = startRegistry(t, scanTemplates, { templatesRoot: root });
    actor.send({ type: 'RELOAD', reqId: 'early' });
    await until(() => replies.length === 1, 'reply');
    assert.deepEqual(templatesOf(replies[0]), ['base']);
  });

  test('a failed scan answers every waiter with the error and keeps the last good list', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, 'base-template'));
    let fail = false;
    const flaky = async (roots: ScanRoots) => {
      if (fail) throw new Error('EACCES: permission denied');
      return scanTemplates(roots);
    };
    const { actor, replies } = startRegistry(t, flaky, { templatesRoot: root });
    await until(() => actor.getSnapshot().matches('idle'), 'first scan');
    fail = true;
    actor.send({ type: 'RELOAD', reqId: 'x' });
    await until(() => replies.length === 1, 'reply');
    const r = replies[0]!;
    assert.ok(!r.ok);
    assert.equal(r.error.code, 'internal');
    assert.match(r.error.message, /template scan failed: EACCES/);
    assert.deepEqual(actor.getSnapshot().context.templates.map((x) => x.name), ['base'], 'the last good list stays');
    fail = false;
    actor.send({ type: 'RELOAD', reqId: 'y' });
    await until(() => replies.length === 2, 'second reply');
    assert.ok(replies[1]!.ok, 'the next good scan clears the error');
    assert.equal(actor.getSnapshot().context.error, null);
  });

  test(
    'a RELOAD sent after a change on disk sees that change, even if a scan was already running',
    async (t) => {
      const root = await tempRoot(t);
      await mkdir(join(root, 'base-template'));
      let release = () => {};
      let hold = false;
      // The directory is read first, then the scan is slow to finish (a big bhyve root, NFS, ...).
      const slow = async (roots: ScanRoots) => {
        const r = await scanTemplates(roots);
        if (hold) await new Promise<void>((res) => (release = res));
        return r;
      };
      const { actor, replies } = startRegistry(t, slow, { templatesRoot: root });
      await until(() => actor.getSnapshot().matches('idle'), 'first scan');
      hold = true;
      actor.send({ type: 'RELOAD', reqId: 'first' });
      await flush();
      hold = false;
      await mkdir(join(root, 'python-template'));
      actor.send({ type: 'RELOAD', reqId: 'after-change' });
      release();
      await until(() => replies.some((r) => r.reqId === 'after-change'), 'answer to after-change');
      assert.deepEqual(templatesOf(replies.find((r) => r.reqId === 'after-change')), ['base', 'python']);
    },
  );
});


describe('registry warnings reach the log', () => {
  test('a name collision is logged at startup and again on reload (not only returned)', async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'coppice-reg-'));
    const vms = mkdtempSync(join(tmpdir(), 'coppice-reg-vm-'));
    t.after(() => {
      rmSync(root, { recursive: true, force: true });
      rmSync(vms, { recursive: true, force: true });
    });
    mkdirSync(join(root, 'twin-template'));
    writeFileSync(join(vms, 'twin.img'), '');
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _e, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const g = new Gateway({ backends: { jail: new FakeBackend() }, roots: { templatesRoot: root, bhyveTemplatesRoot: vms }, logger: pino({ level: 'warn' }, sink), shardCount: 2 }).start();
    t.after(() => g.actor.stop());
    for (let i = 0; i < 500 && g.lifecycle !== 'serving'; i++) await new Promise((r) => setTimeout(r, 10));
    const collisions = () => lines.filter((l) => /twin.{0,3} exists as a jail template/.test(l)).length;
    assert.equal(collisions(), 1, lines.join(''));
    await g.reloadTemplates();
    assert.equal(collisions(), 2);
  });
});
