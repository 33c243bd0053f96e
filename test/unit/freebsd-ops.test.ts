// ops/freebsd/: the rc.d script must parse and pass shellcheck (ops-scripts.test.ts only picks up
// *.sh), its stop sequence is exercised here against a stub rc.subr, and every file says it is
// untested on real FreeBSD. Nothing here proves the files work on FreeBSD.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repo = join(import.meta.dirname, '..', '..');
const dir = join(repo, 'ops', 'freebsd');
const rcd = join(dir, 'rc.d', 'coppice');

const files = (d: string): string[] =>
  readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(d, e.name)) : [join(d, e.name)]));

describe('ops/freebsd', () => {
  it('has the rc.d script, the pf anchor and the template notes', () => {
    assert.deepEqual(files(dir).map((f) => relative(dir, f)).sort(), ['TEMPLATES.md', 'pf.coppice.conf', 'rc.d/coppice']);
  });

  for (const f of files(dir)) {
    it(`${relative(repo, f)} says at the top that it is untested on real FreeBSD`, () => {
      const head = readFileSync(f, 'utf8').split('\n').slice(0, 8).join('\n');
      assert.match(head, /UNTESTED ON REAL FREEBSD/);
    });
  }

  it('rc.d/coppice parses with sh -n and passes shellcheck', async () => {
    await run('sh', ['-n', rcd]);
    await run('shellcheck', ['--shell=sh', rcd]).catch((e: { stdout?: string }) => assert.fail(`shellcheck:\n${e.stdout ?? e}`));
  });

  it('rc.d/coppice is an rc.subr script with an enable knob, a pidfile and a SIGINT stop', () => {
    const s = readFileSync(rcd, 'utf8');
    for (const re of [/^\. \/etc\/rc\.subr$/m, /^rcvar="coppice_enable"$/m, /^pidfile=/m, /^stop_cmd="coppice_stop"$/m, /kill -INT /, /^run_rc_command "\$1"$/m]) {
      assert.match(s, re);
    }
  });

  it('pf.coppice.conf keeps egress NAT switched off: the nat and egress pass rules are commented out', () => {
    const live = readFileSync(join(dir, 'pf.coppice.conf'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
    assert.ok(live.some((l) => /^block drop in quick on \$bridge_if inet from \$sandbox_net to \(self\)$/.test(l)));
    assert.ok(live.some((l) => /^block drop quick on epair inet from \$sandbox_net to \$sandbox_net$/.test(l)));
    assert.deepEqual(live.filter((l) => /^nat\b/.test(l) || /^pass .*to ! \$sandbox_net/.test(l)), []);
  });
});

describe('rc.d/coppice stop (against a stub rc.subr)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'cpc-rcd-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const stub = join(tmp, 'rc.subr');
  writeFileSync(
    stub,
    [
      'load_rc_config() { :; }',
      'err() { _c=$1; shift; echo "err: $*" >&2; exit "$_c"; }',
      'warn() { echo "warn: $*" >&2; }',
      'check_pidfile() { [ -f "$1" ] && cat "$1"; }',
      'run_rc_command() { case "$1" in stop) $stop_cmd ;; *) echo "stub: $1 not supported" >&2; exit 2 ;; esac; }',
      '',
    ].join('\n'),
  );
  const script = join(tmp, 'coppice');
  writeFileSync(script, readFileSync(rcd, 'utf8').replace('. /etc/rc.subr', `. ${stub}`));

  /** A stand-in gateway that exits on the `exitOn`-th SIGINT; returns its pid once it is listening. */
  async function gateway(exitOn: number): Promise<number> {
    const child = spawn(process.execPath, ['-e', `let n=0;process.on('SIGINT',()=>{if(++n===${exitOn})process.exit(0)});console.log('up');setInterval(()=>{},1000)`], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    await new Promise((r) => child.stdout!.once('data', r));
    child.unref();
    return child.pid!;
  }

  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  async function stop(pid: number) {
    const pidfile = join(tmp, `coppice-${pid}.pid`);
    writeFileSync(pidfile, `${pid}\n`);
    const env = { ...process.env, coppice_pidfile: pidfile, coppice_stop_timeout: '1' };
    const { stdout } = await run('sh', [script, 'stop'], { env });
    return { stdout, pidfile };
  }

  it('sends one SIGINT and waits for the drain to finish', async () => {
    const pid = await gateway(1);
    const { stdout, pidfile } = await stop(pid);
    assert.match(stdout, /SIGINT, draining for up to 1 s/);
    assert.doesNotMatch(stdout, /second SIGINT/);
    assert.equal(alive(pid), false);
    assert.equal(existsSync(pidfile), false);
  });

  it('sends a second SIGINT (the forced stop) when the drain outlasts coppice_stop_timeout', async () => {
    const pid = await gateway(2);
    const { stdout } = await stop(pid);
    assert.match(stdout, /second SIGINT \(forced stop\)/);
    assert.doesNotMatch(stdout, /SIGKILL/);
    assert.equal(alive(pid), false);
  });
});
