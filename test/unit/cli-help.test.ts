// The CLI without a gateway: the real bin/coppice.mjs as a child process. --version, --help at
// every level listing every flag the parser takes (serve's compared with src/config.ts), global
// flags anywhere, one-line errors with the documented exit codes, colours only on a terminal
// (a real pty from script(1)) and never with NO_COLOR.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { FLAGS } from '../../src/config.ts';
import { Cmd } from '../../src/cli/common.ts';
import { EXEC_FLAGS } from '../../src/cli/exec.ts';
import { GLOBAL_FLAGS } from '../../src/cli/help.ts';
import { hoistGlobals } from '../../src/cli/main.ts';
import { POOL } from '../../src/cli/pool.ts';
import { SBX } from '../../src/cli/sbx.ts';
import { SERVE_FLAG_HELP } from '../../src/cli/serve-help.ts';
import { SNAP } from '../../src/cli/snap.ts';
import { TPL } from '../../src/cli/tpl.ts';

const BIN = new URL('../../bin/coppice.mjs', import.meta.url).pathname;
const VERSION = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
const hasScript = spawnSync('script', ['--version']).status === 0;

function cli(args: string[], env: Record<string, string | undefined> = {}) {
  const e: Record<string, string | undefined> = { ...process.env, COPPICE_URL: undefined, COPPICE_API_KEY: 'k', NO_COLOR: undefined, ...env };
  for (const [k, v] of Object.entries(e)) if (v === undefined) delete e[k];
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: e as NodeJS.ProcessEnv });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every `--flag` (and `-x`) a help text must name for these parser options. */
function assertLists(text: string, flags: Record<string, { short?: string }>, where: string) {
  for (const [name, f] of Object.entries(flags)) {
    assert.match(text, new RegExp(`--${name}\\b`), `${where} --help does not list --${name}`);
    if (f.short) assert.match(text, new RegExp(`-${f.short}\\b`), `${where} --help does not list -${f.short}`);
  }
}

describe('coppice --version and --help', () => {
  it('--version prints the package version', () => {
    for (const a of [['--version'], ['-V']]) {
      const r = cli(a);
      assert.equal(r.code, 0);
      assert.equal(r.stdout, `coppice ${VERSION}\n`);
    }
  });

  it('every group and every command lists every flag it takes, and the global ones', () => {
    const top = cli(['--help']);
    assert.equal(top.code, 0);
    assertLists(top.stdout, GLOBAL_FLAGS, 'coppice');
    assert.match(top.stdout, /--version/);
    for (const g of [SBX, TPL, POOL, SNAP]) {
      const gh = cli([g.name, '--help']);
      assert.equal(gh.code, 0, `${g.name} --help`);
      assertLists(gh.stdout, GLOBAL_FLAGS, g.name);
      for (const s of g.subs) {
        assert.match(top.stdout, new RegExp(`\\b${s.name}\\b`), `coppice --help does not name ${g.name} ${s.name}`);
        assertLists(gh.stdout, s.flags ?? {}, `${g.name}`);
        if (s.name === 'exec') continue; // its own help: below
        const sh = cli([g.name, s.name, '--help']);
        assert.equal(sh.code, 0, `${g.name} ${s.name} --help: ${sh.stderr}`);
        assert.match(sh.stdout, new RegExp(`^usage: coppice ${g.name} ${s.name}`));
        assertLists(sh.stdout, { ...GLOBAL_FLAGS, ...(s.flags ?? {}) }, `${g.name} ${s.name}`);
      }
    }
    for (const a of [['exec', '--help'], ['sbx', 'exec', '--help']]) {
      const r = cli(a);
      assert.equal(r.code, 0);
      assertLists(r.stdout, { ...EXEC_FLAGS, url: {}, key: {}, json: {} }, a.join(' '));
    }
  });

  it('serve --help lists every flag of src/config.ts, each with words, and coppice --help names them all', () => {
    const r = cli(['serve', '--help']);
    assert.equal(r.code, 0, r.stderr);
    const top = cli(['--help']).stdout;
    for (const flag of Object.keys(FLAGS)) {
      assert.ok(SERVE_FLAG_HELP[flag], `no help words for serve --${flag} (src/cli/serve-help.ts)`);
      assert.match(r.stdout, new RegExp(`--${flag} ${SERVE_FLAG_HELP[flag]!.arg.replace('|', '\\|')} `), `serve --help lacks --${flag}`);
      assert.match(top, new RegExp(`--${flag}\\b`), `coppice --help lacks serve's --${flag}`);
    }
    for (const flag of Object.keys(SERVE_FLAG_HELP)) assert.ok(flag in FLAGS, `serve-help describes --${flag}, which serve does not take`);
    assert.match(r.stdout, /--listen HOST:PORT\s+.*\(default 127\.0\.0\.1:3000\)/);
  });
});

describe('global flags anywhere, one-line errors, exit codes', () => {
  it('hoists --url/--key/--json to where the command parses them, never past "--"', () => {
    assert.deepEqual(hoistGlobals(['--url', 'U', 'sbx', '--json', 'ls', '-q'], {}), ['sbx', 'ls', '-q', '--url', 'U', '--json']);
    assert.deepEqual(hoistGlobals(['--key=K', 'exec', 'id', '--', 'sh', '--url', 'x'], {}), ['exec', 'id', '--key=K', '--', 'sh', '--url', 'x']);
    const env: NodeJS.ProcessEnv = {};
    assert.deepEqual(hoistGlobals(['--no-color', 'tpl', 'list'], env), ['tpl', 'list']);
    assert.equal(env.NO_COLOR, '1');
  });

  it('usage errors are one line and exit 2', () => {
    const cases: [string[], RegExp][] = [
      [['sbx', 'ls', '--bogus'], /^coppice sbx ls: unknown flag --bogus \(coppice sbx ls --help\)\n$/],
      [['sbx', 'ls', '--url'], /^coppice sbx ls: --url needs a value\n$/],
      [['--url', 'not a url', 'sbx', 'ls'], /^coppice sbx ls: --url "not a url": not a URL/],
      [['--url', 'ftp://h', 'tpl', 'list'], /must start with http:\/\/ or https:\/\//],
      [['sbx', 'frobnicate'], /^coppice sbx: unknown command "frobnicate"/],
      [['serve', '--bogus'], /^coppice serve: unknown flag --bogus \(coppice serve --help\)\n$/],
      [['serve', '--listen', 'nope'], /^coppice serve: --listen: must be HOST:PORT\n$/],
      [['exec', 'abc', '--nope', '--', 'ls'], /^coppice exec: unknown flag --nope \(coppice exec --help\)\n$/],
      [['nonsense'], /^coppice: unknown command "nonsense"/],
    ];
    for (const [args, re] of cases) {
      const r = cli(args);
      assert.equal(r.code, 2, `coppice ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re, `coppice ${args.join(' ')}`);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, `coppice ${args.join(' ')}: ${r.stderr}`);
    }
  });

  it('nothing at the URL: one line, exit 10 (cannot connect), before or after the command', async () => {
    // A port that was just free: connection refused.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    for (const args of [['--url', `http://127.0.0.1:${port}`, 'sbx', 'ls'], ['sbx', 'ls', '--url', `http://127.0.0.1:${port}`]]) {
      const r = cli(args);
      assert.equal(r.code, 10, r.stderr);
      assert.match(r.stderr, new RegExp(`^coppice sbx ls: cannot connect to http://127\\.0\\.0\\.1:${port}: connection refused`));
      assert.equal(r.stderr.trimEnd().split('\n').length, 1);
    }
    // The example: port 9 (one fetch would refuse to even try; the SDK does not use fetch).
    const nine = cli(['--url', 'http://127.0.0.1:9', 'sbx', 'ls']);
    assert.equal(nine.code, 10);
    assert.match(nine.stderr, /^coppice sbx ls: cannot connect to http:\/\/127\.0\.0\.1:9: connection refused \(is the gateway running\? check --url or COPPICE_URL\)\n$/);
    // exec keeps its own convention (125 = coppice failed), one line too.
    const ex = cli(['exec', 'abc', '--url', `http://127.0.0.1:${port}`, '--', 'true']);
    assert.equal(ex.code, 125);
    assert.match(ex.stderr, /^coppice exec: cannot connect to .*: connection refused\n$/);
  });
});

describe('colours', { skip: hasScript ? false : 'needs script(1) for a pty' }, () => {
  /** Run under a pseudo-terminal (script -q -e -c): what a person at a terminal sees. */
  const onTty = (args: string[], env: Record<string, string> = {}) => {
    const line = [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' ');
    const e = { ...process.env, COPPICE_API_KEY: 'k', ...env } as NodeJS.ProcessEnv;
    if (!('NO_COLOR' in env)) delete e.NO_COLOR;
    try {
      return execFileSync('script', ['-q', '-e', '-c', line, '/dev/null'], { encoding: 'utf8', env: e });
    } catch (err) {
      return (err as { stdout: string }).stdout;
    }
  };

  it('tables: a bold header and coloured states on a terminal, plain text otherwise', () => {
    const make = (isTTY: boolean, env: NodeJS.ProcessEnv = {}) => {
      const out = { isTTY, write: () => true } as unknown as NodeJS.WritableStream & { isTTY?: boolean };
      return new Cmd('sbx ls', { stdout: out, stderr: out, env }, {});
    };
    const rows = [['a1', 'running'], ['b2', 'paused']];
    const tty = make(true).table(['ID', 'STATE'], rows);
    assert.match(tty, /^\x1b\[1mID\s+STATE\x1b\[0m\n/);
    assert.match(tty, /a1 {2}\x1b\[32mrunning\x1b\[0m/);
    assert.match(tty, /b2 {2}\x1b\[33mpaused\x1b\[0m/);
    assert.doesNotMatch(make(true, { NO_COLOR: '1' }).table(['ID', 'STATE'], rows), /\x1b/);
    assert.doesNotMatch(make(false).table(['ID', 'STATE'], rows), /\x1b/);
  });

  it('on a terminal only, and never with NO_COLOR or --no-color', () => {
    const args = ['sbx', 'ls', '--bogus'];
    assert.match(onTty(args), /\x1b\[31mcoppice sbx ls:\x1b\[0m unknown flag/);
    assert.doesNotMatch(onTty(args, { NO_COLOR: '1' }), /\x1b\[/);
    assert.doesNotMatch(onTty([...args, '--no-color']), /\x1b\[/);
    assert.doesNotMatch(cli(args).stderr, /\x1b\[/);
  });
});
