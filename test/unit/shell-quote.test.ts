// shellQuote / buildRemoteCommand: exact strings for the simple cases, and a round trip through
// this host's /bin/sh (the same dash a Debian guest runs) for the hostile ones.
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoppiceError } from '../../src/errors.ts';
import { buildRemoteCommand, EXEC_MARKER, MAX_REMOTE_COMMAND, shellQuote } from '../../src/backends/bhyve/ssh.ts';

/** What /bin/sh makes of a quoted argv: run it through `printf '%s\0'` and split on NUL. */
function viaSh(argv: string[]): string[] {
  const out = execFileSync('/bin/sh', ['-c', `printf '%s\\0' ${shellQuote(argv)}`]);
  const parts = out.toString('utf8').split('\0');
  parts.pop();
  return parts;
}

test('safe words stay bare, everything else is single-quoted', () => {
  assert.equal(shellQuote(['ls', '-la', '/tmp/x.txt', 'a=b']), `ls -la /tmp/x.txt 'a=b'`);
  assert.equal(shellQuote(['']), `''`);
  assert.equal(shellQuote(['a b']), `'a b'`);
  assert.equal(shellQuote(["it's"]), `'it'\\''s'`);
  assert.equal(shellQuote(["'"]), `''\\'''`);
  assert.equal(shellQuote(['$(id)']), `'$(id)'`);
  assert.equal(shellQuote(['~']), `'~'`);
  assert.equal(shellQuote([]), '');
});

const hostile: string[][] = [
  [''],
  ['', '', ''],
  ["'"],
  ["''''"],
  ['"'],
  ['\\'],
  ['\\\''],
  ['$(touch /tmp/pwned)'],
  ['`id`'],
  ['${HOME}', '$HOME', '$0', '$@', '$*', '$$'],
  ['a\nb', '\n', '\r\n', '\t'],
  ['-n', '--', '-e', '-'],
  ['*', '?', '[a]', '{a,b}', '~root'],
  ['a;b', 'a|b', 'a&b', 'a>b', 'a<b', '(a)', '#x', '!x'],
  ['héllo', 'ユニコード', '🐱‍👤', '\u00a0', '\u202e'],
  ['\x01\x02\x7f\x1b[31m'],
  ["it's a \"test\" of `this` and $(that)\nand more"],
];

for (const argv of hostile) {
  test(`round trip through /bin/sh: ${JSON.stringify(argv)}`, () => {
    assert.deepEqual(viaSh(argv), argv);
  });
}

test('NUL cannot be passed to a command and is refused', () => {
  assert.throws(() => shellQuote(['a\0b']), (e: unknown) => e instanceof CoppiceError && e.code === 'bad_request');
});

test('buildRemoteCommand: root, no env or cwd', () => {
  assert.equal(buildRemoteCommand({ argv: ['python3', '-c', 'print(6*7)'] }), `exec python3 -c 'print(6*7)'`);
});

test('buildRemoteCommand: cwd and env are quoted', () => {
  assert.equal(
    buildRemoteCommand({ argv: ['env'], cwd: '/tmp/a b', env: { A: "x'y", B: '' } }),
    `cd '/tmp/a b' && exec env 'A=x'\\''y' 'B=' env`,
  );
  // A cwd starting with a dash is not taken for an option of cd.
  assert.match(buildRemoteCommand({ argv: ['true'], cwd: '-x' }), /^cd \.\/-x && /);
});

test('buildRemoteCommand: the exec marker comes first, before cd', () => {
  const cmd = buildRemoteCommand({ argv: ['true'], cwd: '/' }, 'root', 'abc123');
  assert.equal(cmd, `export ${EXEC_MARKER}=abc123; cd / && exec true`);
});

test('buildRemoteCommand: a non-root user runs through setpriv, in its home by default', () => {
  const cmd = buildRemoteCommand({ argv: ['id', '-u'], user: 'user' });
  assert.equal(cmd, `exec setpriv --reuid=user --regid="$(id -g user)" --init-groups --reset-env /bin/sh -c 'cd && exec id -u'`);
  // The default user can be changed by the caller.
  assert.match(buildRemoteCommand({ argv: ['id'] }, 'user'), /^exec setpriv --reuid=user /);
});

test('buildRemoteCommand: bad input is a 400 naming the field', () => {
  const bad = (f: () => unknown, field: string) =>
    assert.throws(f, (e: unknown) => e instanceof CoppiceError && e.code === 'bad_request' && e.field === field);
  bad(() => buildRemoteCommand({ argv: [] }), 'argv');
  bad(() => buildRemoteCommand({ argv: ['x'], env: { 'A-B': '1' } }), 'env');
  bad(() => buildRemoteCommand({ argv: ['x'], env: { '1A': '1' } }), 'env');
  bad(() => buildRemoteCommand({ argv: ['a=b'], env: { A: '1' } }), 'argv');
  bad(() => buildRemoteCommand({ argv: ['x'], user: 'bad user' }), 'user');
  bad(() => buildRemoteCommand({ argv: ['x'], user: '$(id)' }), 'user');
});

test('the built command runs as intended in /bin/sh (root path)', () => {
  const cmd = buildRemoteCommand({ argv: ['sh', '-c', 'printf "%s|%s|%s" "$PWD" "$A" "$1"', 'sh', "o'k"], cwd: '/tmp', env: { A: '$(x)' } });
  assert.equal(execFileSync('/bin/sh', ['-c', cmd]).toString(), "/tmp|$(x)|o'k");
});

test('buildRemoteCommand: a NUL is refused naming the field it is in (argv, env.K, cwd)', () => {
  const field = (spec: Parameters<typeof buildRemoteCommand>[0]) => {
    try {
      buildRemoteCommand(spec);
    } catch (e) {
      assert.ok(e instanceof CoppiceError && e.code === 'bad_request');
      return e.field;
    }
    assert.fail('accepted');
  };
  assert.equal(field({ argv: ['echo', 'a\0b'] }), 'argv');
  assert.equal(field({ argv: ['env'], env: { K: 'x\0y' } }), 'env.K');
  assert.equal(field({ argv: ['true'], cwd: '/tmp\0x' }), 'cwd');
});

test(`buildRemoteCommand: a command line longer than the guest takes (${MAX_REMOTE_COMMAND} bytes) is refused, one just under passes`, () => {
  const under = buildRemoteCommand({ argv: ['echo', 'x'.repeat(MAX_REMOTE_COMMAND - 100)] });
  assert.ok(under.length <= MAX_REMOTE_COMMAND);
  assert.throws(
    () => buildRemoteCommand({ argv: ['echo', 'x'.repeat(MAX_REMOTE_COMMAND)] }),
    (e: unknown) => e instanceof CoppiceError && e.code === 'bad_request' && e.field === 'argv' && /stdin/.test(e.message),
  );
});
