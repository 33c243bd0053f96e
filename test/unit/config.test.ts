// `coppice serve` flags (src/config.ts): defaults, every flag, and a ConfigError naming the flag.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, parseServeArgs, splitListen } from '../../src/config.ts';

/** Assert parsing fails with a ConfigError whose message names `flag`. */
function rejects(argv: string[], flag: string, detail?: RegExp): void {
  assert.throws(
    () => parseServeArgs(argv),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      assert.ok(err.message.includes(flag), `"${err.message}" does not name ${flag}`);
      if (detail) assert.match(err.message, detail);
      return true;
    },
    `${argv.join(' ')} should be refused`,
  );
}

describe('parseServeArgs defaults', () => {
  test('no flags gives the documented defaults', () => {
    assert.deepEqual(parseServeArgs([]), {
      listen: '127.0.0.1:3000',
      templatesRoot: '/var/lib/coppice/templates',
      jailPoolSize: 0,
      bhyvePoolSize: 0,
      stateDir: '/var/lib/coppice',
      jailSubnet: '10.78.0.0/24',
      poolCtl: '/usr/local/sbin/coppice-bhyve-pool-ctl.sh',
      sshKey: '/root/coppice-signing/pool-key',
      drainTimeout: 30,
      diskMib: 2048,
      maxDiskMib: 65536,
      jailUidBase: 1_000_000_000,
      jailHardening: 'on',
      maxMemoryMib: 8192,
      maxCpus: 4,
      maxPids: 4096,
      maxTimeout: 86400,
      maxSandboxes: 500,
      maxConcurrentCreates: 32,
      createQueue: 128,
      bodyLimit: 32 * 1024 * 1024,
      logLevel: 'info',
    });
  });

  test('the optional roots and files are absent unless given', () => {
    const c = parseServeArgs([]);
    assert.equal(c.bhyveTemplatesRoot, undefined, 'no bhyve pass unless asked');
    assert.equal(c.apiKeyFile, undefined);
  });
});

describe('parseServeArgs flags', () => {
  test('every flag is parsed into its field', () => {
    const c = parseServeArgs([
      '--listen', '0.0.0.0:8080',
      '--templates-root', '/srv/templates',
      '--bhyve-templates-root', '/srv/bhyve',
      '--bhyve-pool-size', '4',
      '--jail-pool-size', '3',
      '--jail-pool-templates', 'base,busybox',
      '--state-dir', '/srv/state',
      '--api-key-file', '/etc/coppice/key',
      '--jail-subnet', '10.90.0.0/16',
      '--pool-ctl', '/opt/pool-ctl',
      '--ssh-key', '/etc/coppice/ssh-key',
      '--drain-timeout', '45',
      '--max-sandboxes', '100',
      '--max-memory-mib', '2048',
      '--max-cpus', '8',
      '--max-pids', '1024',
      '--max-timeout', '3600',
      '--disk-mib', '512',
      '--max-disk-mib', '1024',
      '--jail-uid-base', '200000',
      '--jail-hardening', 'off',
      '--max-concurrent-creates', '8',
      '--create-queue', '16',
      '--body-limit', '4096',
      '--log-level', 'debug',
    ]);
    assert.deepEqual(c, {
      listen: '0.0.0.0:8080',
      templatesRoot: '/srv/templates',
      bhyveTemplatesRoot: '/srv/bhyve',
      bhyvePoolSize: 4,
      jailPoolSize: 3,
      jailPoolTemplates: 'base,busybox',
      stateDir: '/srv/state',
      apiKeyFile: '/etc/coppice/key',
      jailSubnet: '10.90.0.0/16',
      poolCtl: '/opt/pool-ctl',
      sshKey: '/etc/coppice/ssh-key',
      drainTimeout: 45,
      diskMib: 512,
      maxDiskMib: 1024,
      jailUidBase: 200000,
      jailHardening: 'off',
      maxSandboxes: 100,
      maxMemoryMib: 2048,
      maxCpus: 8,
      maxPids: 1024,
      maxTimeout: 3600,
      maxConcurrentCreates: 8,
      createQueue: 16,
      bodyLimit: 4096,
      logLevel: 'debug',
    });
  });

  test('--disk-mib above --max-disk-mib, a bad uid base or hardening value are refused', () => {
    assert.throws(() => parseServeArgs(['--disk-mib', '4096', '--max-disk-mib', '2048']), /--disk-mib: must not exceed --max-disk-mib/);
    assert.throws(() => parseServeArgs(['--jail-uid-base', '100']), /--jail-uid-base/);
    assert.throws(() => parseServeArgs(['--jail-hardening', 'maybe']), /--jail-hardening/);
  });

  test('--flag=value works as well as --flag value', () => {
    const c = parseServeArgs(['--listen=localhost:9000', '--bhyve-pool-size=0', '--drain-timeout=1']);
    assert.equal(c.listen, 'localhost:9000');
    assert.equal(c.bhyvePoolSize, 0);
    assert.equal(c.drainTimeout, 1);
  });

  test('--listen accepts a bracketed IPv6 host, and splitListen splits it', () => {
    assert.equal(parseServeArgs(['--listen', '[::1]:3000']).listen, '[::1]:3000');
    assert.deepEqual(splitListen('[::1]:3000'), { host: '::1', port: 3000 });
    assert.deepEqual(splitListen('127.0.0.1:3000'), { host: '127.0.0.1', port: 3000 });
  });

  test('numbers are numbers, not strings', () => {
    const c = parseServeArgs(['--bhyve-pool-size', '12', '--drain-timeout', '3600']);
    assert.equal(c.bhyvePoolSize, 12);
    assert.equal(c.drainTimeout, 3600);
  });
});

describe('parseServeArgs refuses bad values, naming the flag', () => {
  test('--listen without a port, with a bad port, or with no host', () => {
    rejects(['--listen', 'localhost'], '--listen', /HOST:PORT/);
    rejects(['--listen', '127.0.0.1:70000'], '--listen', /65535/);
    rejects(['--listen', ':3000'], '--listen');
    rejects(['--listen', '127.0.0.1:http'], '--listen');
    rejects(['--listen', 'a b:3000'], '--listen');
  });

  test('--listen with no value at all', () => {
    rejects(['--listen'], '--listen');
  });

  test('--bhyve-pool-size that is not a whole number in range', () => {
    rejects(['--bhyve-pool-size', 'many'], '--bhyve-pool-size');
    rejects(['--bhyve-pool-size', '1.5'], '--bhyve-pool-size');
    rejects(['--bhyve-pool-size=-1'], '--bhyve-pool-size');
    rejects(['--bhyve-pool-size', '-1'], '--bhyve-pool-size');
    rejects(['--bhyve-pool-size', '1001'], '--bhyve-pool-size');
  });

  test('--bhyve-pool-size with an empty value', () => {
    rejects(['--bhyve-pool-size='], '--bhyve-pool-size');
  });

  test('--jail-subnet that is not an IPv4 CIDR, has a bad octet, or a prefix outside /16../30', () => {
    rejects(['--jail-subnet', '10.78.0.0'], '--jail-subnet', /CIDR/);
    rejects(['--jail-subnet', '10.78.0.0/8'], '--jail-subnet', /\/16/);
    rejects(['--jail-subnet', '10.78.0.0/31'], '--jail-subnet');
    rejects(['--jail-subnet', '300.1.1.0/24'], '--jail-subnet', /255/);
    rejects(['--jail-subnet', 'fd00::/64'], '--jail-subnet');
  });

  test('relative paths for every path flag', () => {
    for (const flag of ['--templates-root', '--bhyve-templates-root', '--state-dir', '--api-key-file', '--pool-ctl', '--ssh-key']) {
      rejects([flag, 'relative/path'], flag, /absolute/);
      rejects([flag, './here'], flag, /absolute/);
    }
  });

  test('--drain-timeout out of 1..3600 and --log-level outside the known levels', () => {
    rejects(['--drain-timeout', '0'], '--drain-timeout');
    rejects(['--drain-timeout', '3601'], '--drain-timeout');
    rejects(['--log-level', 'loud'], '--log-level');
  });

  test('an unknown flag is refused by name', () => {
    rejects(['--frobnicate', '1'], '--frobnicate');
    rejects(['--templatesRoot', '/x'], '--templatesRoot');
  });

  test('a positional argument is refused', () => {
    assert.throws(() => parseServeArgs(['serve-now']), (e: unknown) => e instanceof ConfigError && /serve-now/.test(e.message));
  });

  test('the first bad flag of several is the one named', () => {
    rejects(['--listen', '127.0.0.1:3000', '--jail-subnet', 'nope'], '--jail-subnet');
  });
});
