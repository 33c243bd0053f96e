// Parsers, names and exec argv of the FreeBSD jail driver (UNTESTED ON REAL FREEBSD: the tool
// output formats here come from the manuals and from pot/Bastille/runj, not from a FreeBSD host).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CoppiceError } from '../../src/errors.ts';
import { commandArgv, execArgv } from '../../src/backends/jail/freebsd/exec.ts';
import { parseSnapshotDataset, sandboxNames, templateOrigin, type Layout } from '../../src/backends/jail/freebsd/names.ts';
import { parseEpairCreate, parseJid, parseJls, unstoppedStates } from '../../src/backends/jail/freebsd/parse.ts';
import { parseSnapshotList } from '../../src/backends/jail/freebsd/snapshot.ts';

const layout: Layout = { root: 'zroot/coppice', jailsDir: '/var/lib/coppice/jails', templateSnapshot: 'base' };

describe('parseEpairCreate', () => {
  it('derives both ends from the A end ifconfig prints, with or without a trailing newline', () => {
    assert.deepEqual(parseEpairCreate('epair0a\n'), { a: 'epair0a', b: 'epair0b' });
    assert.deepEqual(parseEpairCreate('  epair123a'), { a: 'epair123a', b: 'epair123b' });
  });

  it('rejects anything that is not exactly one epairNa', () => {
    for (const bad of ['', 'epair0b', 'epaira', 'epair0a\nepair1a', 'tap0', 'epair0a extra', 'xepair0a']) {
      assert.throws(() => parseEpairCreate(bad), /unexpected output/, JSON.stringify(bad));
    }
  });
});

describe('parseJid', () => {
  it('reads the jid jail -i prints, taking the last non-empty line', () => {
    assert.equal(parseJid('42\n'), 42);
    assert.equal(parseJid('jail: warning\n7\n\n'), 7);
  });

  it('rejects an empty, zero or non-numeric answer', () => {
    for (const bad of ['', '\n', '0', 'abc', '4 2', '-3']) assert.throws(() => parseJid(bad), /unexpected output/, JSON.stringify(bad));
  });
});

describe('parseJls', () => {
  it('reads `jls name jid` lines and skips blank or malformed ones', () => {
    assert.deepEqual(parseJls('coppice-abc0123456 3\nweb 1\n\nhalf\nthree fields here\nname notanumber\n  spaced   9  \n'), [
      { name: 'coppice-abc0123456', jid: 3 },
      { name: 'web', jid: 1 },
      { name: 'spaced', jid: 9 },
    ]);
    assert.deepEqual(parseJls(''), []);
  });
});

describe('unstoppedStates', () => {
  it('counts stopped (T) and zombie (Z) processes as frozen, anything else as still running', () => {
    assert.deepEqual(unstoppedStates('T\nTs\nZ\nS+\nR\nDL\nI\n\n'), ['S+', 'R', 'DL', 'I']);
    assert.deepEqual(unstoppedStates(''), []);
  });
});

describe('names and datasets', () => {
  it('names every host object from the id, within IFNAMSIZ', () => {
    const n = sandboxNames(layout, 'abc0123456');
    assert.deepEqual(n, {
      id: 'abc0123456',
      jail: 'coppice-abc0123456',
      ifA: 'cpcabc0123456a',
      ifB: 'cpcabc0123456b',
      dataset: 'zroot/coppice/sandboxes/abc0123456',
      mountpoint: '/var/lib/coppice/jails/abc0123456',
    });
    assert.ok(n.ifA.length <= 15);
  });

  it('maps a template to <root>/templates/<name>@base and refuses names ZFS cannot hold', () => {
    assert.equal(templateOrigin(layout, { name: 'python', path: '/t/python-template', backend: 'jail' }), 'zroot/coppice/templates/python@base');
    assert.throws(() => templateOrigin(layout, { name: 'a b', path: '/t', backend: 'jail' }), (e: unknown) => e instanceof CoppiceError && e.field === 'template');
  });

  it('parses only our own sandbox snapshots back into ids', () => {
    assert.deepEqual(parseSnapshotDataset(layout, 'zroot/coppice/sandboxes/abc0123456@snap-x1'), { sandboxId: 'abc0123456', snapshotId: 'snap-x1' });
    for (const bad of [
      'zroot/coppice/templates/base@base',
      'zroot/coppice/sandboxes/abc0123456',
      'zroot/coppice/sandboxes/abc0123456@a@b',
      'zroot/coppice/sandboxes/short@s',
      'zroot/coppice/sandboxes/abc0123456@',
      'other/coppice/sandboxes/abc0123456@s',
      '-',
    ]) {
      assert.equal(parseSnapshotDataset(layout, bad), null, bad);
    }
  });

  it('reads zfs list rows into snapshot records, flagging deferred ones and skipping foreign ones', () => {
    const rows = parseSnapshotList(
      layout,
      [
        'zroot/coppice/sandboxes/abc0123456@s1\toff\tbase\t2026-01-01T00:00:00.000Z\t12288',
        'zroot/coppice/sandboxes/abc0123456@s2\ton\tbase\t2026-01-02T00:00:00.000Z\t-',
        'zroot/coppice/sandboxes/abc0123456@manual\toff\t-\t-\t1',
        'zroot/coppice/sandboxes/abc0123456@short\toff',
      ].join('\n'),
    );
    assert.deepEqual(
      rows.map((r) => [r.snapshotID, r.deferred, r.sizeBytes]),
      [['s1', false, 12288], ['s2', true, 0]],
    );
  });
});

describe('exec argv', () => {
  it('passes argv untouched when there is no env or cwd', () => {
    assert.deepEqual(execArgv('coppice-abc0123456', 'user', { argv: ['sh', '-c', 'echo "$HOME"'] }), [
      'jexec', '-l', '-U', 'user', 'coppice-abc0123456', 'sh', '-c', 'echo "$HOME"',
    ]);
  });

  it('wraps with sh when env is set and argv[0] contains `=`, so env(1) does not take it for a variable', () => {
    assert.deepEqual(commandArgv({ argv: ['a=b', 'x'], env: { K: 'v' } }), ['/usr/bin/env', 'K=v', '/bin/sh', '-c', 'exec "$@"', 'coppice-exec', 'a=b', 'x']);
    assert.deepEqual(commandArgv({ argv: ['a=b'] }), ['a=b']);
  });

  it('refuses empty argv, bad env names and user names jexec could read as options', () => {
    const field = (f: string) => (e: unknown) => e instanceof CoppiceError && e.field === f;
    assert.throws(() => commandArgv({ argv: [] }), field('argv'));
    assert.throws(() => commandArgv({ argv: ['x'], env: { 'A=B': '1' } }), field('env'));
    assert.throws(() => commandArgv({ argv: ['x'], env: { '1A': '1' } }), field('env'));
    assert.throws(() => execArgv('coppice-abc0123456', '-u', { argv: ['x'] }), field('user'));
    assert.throws(() => execArgv('coppice-abc0123456', 'a b', { argv: ['x'] }), field('user'));
  });
});
