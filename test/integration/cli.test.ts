// The `coppice` client commands as a user runs them: the real bin/coppice.mjs as a child process
// against a real gateway (in-process, real runc sandboxes). Every command of tpl / sbx / pool /
// snap, and the documented exit codes for the failures (usage, 404, 409, 501, 503, 401, unreachable).
//
// Pools need a bhyve template: the gateway runs with a bhyve templates root holding an empty
// `fakevm.img` and a stand-in pool-ctl (a small shell script, written below, that follows
// notes/pool-ctl-contract.md for warm / list / drain with progress on stderr). It boots nothing:
// the bhyve path itself is tested for real in bhyve-gateway.test.ts; here it is the CLI and the
// gateway's pool routes that are under test. Needs root (runc).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../../src/sdk/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const root = process.getuid?.() === 0;
const skip = root ? false : 'needs root (runc sandboxes)';
const BIN = new URL('../../bin/coppice.mjs', import.meta.url).pathname;

const FAKE_POOL_CTL = `#!/bin/sh
# Stand-in pool-ctl for CLI tests: slot counts in $COPPICE_BHYVE_TEMPLATES_ROOT/.pool/<template>.
set -eu
st="\${COPPICE_BHYVE_TEMPLATES_ROOT:?}/.pool"
mkdir -p "$st"
verb="\${1:-}"
[ $# -gt 0 ] && shift
case "$verb" in
  warm)
    t="$1"; n="$3"; cur=$(cat "$st/$t" 2>/dev/null || echo 0)
    while [ "$cur" -lt "$n" ]; do
      cur=$((cur + 1)); echo "booting $t-$cur" >&2; sleep 0.2; echo "$t-$cur ready ($cur/$n)" >&2
    done
    echo "$cur" > "$st/$t"
    printf '{"template":"%s","available":%s}\\n' "$t" "$cur" ;;
  drain)
    if [ -f "$st/.slow-drain" ]; then sleep "$(cat "$st/.slow-drain")"; fi
    echo 0 > "$st/$1" ;;
  list)
    out=""
    for f in "$st"/*; do
      [ -f "$f" ] || continue
      out="$out\${out:+,}\\"$(basename "$f")\\":{\\"available\\":$(cat "$f"),\\"in_use\\":0}"
    done
    printf '{"templates":{%s},"vms":[]}\\n' "$out" ;;
  checkout) echo "pool empty" >&2; exit 3 ;;
  release|pause|resume) ;;
  *) echo "unknown verb $verb" >&2; exit 2 ;;
esac
`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let gw: TestGateway;
let scratch: string;
const sandboxes = new Set<string>();
const snapshots = new Set<string>();

function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const childEnv: Record<string, string | undefined> = { ...process.env, COPPICE_URL: gw.url, COPPICE_API_KEY: gw.key, ...env };
    for (const [k, v] of Object.entries(childEnv)) if (v === undefined) delete childEnv[k];
    const child = spawn(process.execPath, [BIN, ...args], { env: childEnv as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: out, stderr: err }));
  });
}

/** Run and insist on an exit code, showing the output if it is not. */
async function expect(code: number, args: string[], env?: Record<string, string | undefined>): Promise<Run> {
  const r = await cli(args, env);
  assert.equal(r.code, code, `coppice ${args.join(' ')} exited ${r.code}, wanted ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

function bhyveRoot(dir: string): { imgRoot: string; poolCtl: string } {
  const imgRoot = join(dir, 'images');
  mkdirSync(imgRoot, { recursive: true });
  writeFileSync(join(imgRoot, 'fakevm.img'), '');
  const poolCtl = join(dir, 'pool-ctl.sh');
  writeFileSync(poolCtl, FAKE_POOL_CTL);
  chmodSync(poolCtl, 0o755);
  return { imgRoot, poolCtl };
}

describe('coppice CLI (real binary, real gateway)', { skip, timeout: 300_000 }, () => {
  let imgRoot: string;

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'coppice-cli-'));
    const b = bhyveRoot(scratch);
    imgRoot = b.imgRoot;
    gw = await startTestGateway(['--jail-subnet', '10.78.46.0/24', '--bhyve-templates-root', imgRoot, '--pool-ctl', b.poolCtl]);
  });

  after(async () => {
    for (const id of sandboxes) await gw?.api('DELETE', `/sandboxes/${id}`).catch(() => undefined);
    for (const id of snapshots) await gw?.api('DELETE', `/snapshots/${id}`).catch(() => undefined);
    await gw?.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('help and usage errors exit 0 / 2', async () => {
    const help = await expect(0, ['--help']);
    assert.match(help.stdout, /sbx\s+sandboxes:\s+create \| ls \| info/);
    assert.match(help.stdout, /3 not found/);
    await expect(2, []);
    await expect(2, ['nonsense']);
    await expect(2, ['sbx']);
    const badSub = await expect(2, ['sbx', 'frobnicate']);
    assert.match(badSub.stderr, /unknown command "frobnicate"/);
    await expect(2, ['tpl', 'list', '--no-such-flag']);
    await expect(2, ['sbx', 'info']);
    await expect(2, ['pool', 'warm', 'fakevm']);
    await expect(2, ['sbx', 'create', 'busybox', '--timeout', 'soon']);
    await expect(0, ['sbx', '--help']);
  });

  it('tpl list shows every template with its backend (table and --json)', async () => {
    const r = await expect(0, ['tpl', 'list']);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0]!, /^NAME\s+BACKEND\s+PATH$/);
    assert.ok(lines.some((l) => /^busybox\s+jail\s+\//.test(l)), r.stdout);
    assert.ok(lines.some((l) => /^fakevm\s+bhyve\s+\//.test(l)), r.stdout);
    const json = JSON.parse((await expect(0, ['tpl', 'list', '--json'])).stdout) as { name: string; backend: string }[];
    assert.deepEqual(json.find((t) => t.name === 'fakevm')?.backend, 'bhyve');
    assert.deepEqual(json.find((t) => t.name === 'base')?.backend, 'jail');
  });

  it('tpl reload picks up a new template', async () => {
    writeFileSync(join(imgRoot, 'fakevm2.img'), '');
    const r = await expect(0, ['tpl', 'reload']);
    assert.match(r.stdout, /fakevm2 \(bhyve\)/);
    const json = JSON.parse((await expect(0, ['tpl', 'reload', '--json'])).stdout) as { templates: { name: string }[]; warnings: string[] };
    assert.ok(json.templates.some((t) => t.name === 'fakevm2'));
  });

  it('sbx create / ls / info / exec / pause / resume / rm, with the exit codes of their failures', async () => {
    const created = await expect(0, ['sbx', 'create', 'busybox', '--env', 'GREETING=hello', '--meta', 'owner=cli-test', '--timeout', '600', '--memory', '256']);
    const id = created.stdout.trim();
    assert.match(id, /^[a-z0-9]{10}$/);
    sandboxes.add(id);
    assert.match(created.stderr, new RegExp(`created ${id} from busybox \\(jail, 10\\.78\\.46\\.\\d+\\)`));

    const ls = await expect(0, ['sbx', 'ls']);
    assert.match(ls.stdout.split('\n')[0]!, /^ID\s+TEMPLATE\s+BACKEND\s+STATE\s+IP\s+PROCS\s+STARTED\s+ENDS$/);
    assert.match(ls.stdout, new RegExp(`^${id}\\s+busybox\\s+jail\\s+running\\s+10\\.78\\.46\\.`, 'm'));
    assert.ok((await expect(0, ['sbx', 'ls', '-q'])).stdout.split('\n').includes(id));
    const lsJson = JSON.parse((await expect(0, ['sbx', 'ls', '--json'])).stdout) as { sandboxID: string; metadata: Record<string, string> }[];
    assert.equal(lsJson.find((s) => s.sandboxID === id)?.metadata.owner, 'cli-test');
    assert.equal((await expect(0, ['sbx', 'ls', '--state', 'paused', '-q'])).stdout.trim(), '');

    const run = await expect(0, ['sbx', 'exec', id, '--', 'sh', '-c', 'echo $GREETING; echo data > /tmp/f']);
    assert.equal(run.stdout, 'hello\n');
    await expect(3, ['sbx', 'exec', id, '--', 'sh', '-c', 'exit 3']);

    const info = await expect(0, ['sbx', 'info', id]);
    assert.match(info.stdout, /^template\s+busybox$/m);
    assert.match(info.stdout, /^state\s+running \(ready\)$/m);
    assert.match(info.stdout, /^limits\s+256 MiB/m);
    assert.match(info.stdout, /^PROCESS\s+KIND\s+STATE\s+EXIT/m);
    const infoJson = JSON.parse((await expect(0, ['sbx', 'info', id, '--json'])).stdout) as { sandboxID: string; commands: unknown[] };
    assert.equal(infoJson.sandboxID, id);
    assert.ok(infoJson.commands.length >= 2);

    assert.equal((await expect(0, ['sbx', 'pause', id])).stdout.trim(), id);
    const again = await expect(4, ['sbx', 'pause', id]);
    assert.match(again.stderr, /cannot pause a sandbox that is paused/);
    assert.equal(JSON.parse((await expect(0, ['sbx', 'ls', '--json'])).stdout).find((s: { sandboxID: string }) => s.sandboxID === id).state, 'paused');
    const resumed = JSON.parse((await expect(0, ['sbx', 'resume', id, '--json'])).stdout) as { state: string };
    assert.equal(resumed.state, 'running');
    await expect(4, ['sbx', 'resume', id]);

    // Invalid input the gateway refuses (400): a usage error, with the gateway's body under --json.
    const bad = await expect(2, ['sbx', 'create', 'busybox', '--memory', '1', '--json']);
    const body = JSON.parse(bad.stdout) as { code: number; error: string; field: string };
    assert.deepEqual([body.code, body.error, body.field], [400, 'bad_request', 'limits.memoryMiB']);

    const missing = await expect(3, ['sbx', 'info', 'zzzzzzzzzz']);
    assert.match(missing.stderr, /sandbox "zzzzzzzzzz" not found/);
    await expect(3, ['sbx', 'create', 'no-such-template']);

    assert.equal((await expect(0, ['sbx', 'rm', id])).stdout.trim(), id);
    sandboxes.delete(id);
    await expect(3, ['sbx', 'rm', id]);
    await expect(3, ['sbx', 'pause', id]);
  });

  it('sbx snapshot / fork / create --snapshot, snap ls / rm', async () => {
    const id = (await expect(0, ['sbx', 'create', 'busybox'])).stdout.trim();
    sandboxes.add(id);
    await expect(0, ['sbx', 'exec', id, '--user', 'root', '--', 'sh', '-c', 'echo v1 > /root/marker']);

    const snap = (await expect(0, ['sbx', 'snapshot', id])).stdout.trim();
    assert.match(snap, /^snap-[a-z0-9]{10}$/);
    snapshots.add(snap);
    const listed = await expect(0, ['snap', 'ls']);
    assert.match(listed.stdout, new RegExp(`^${snap}\\s+${id}\\s+busybox\\s+jail`, 'm'));

    await expect(0, ['sbx', 'exec', id, '--user', 'root', '--', 'sh', '-c', 'echo v2 > /root/marker']);
    const fork = JSON.parse((await expect(0, ['sbx', 'fork', id, '--json', '--meta', 'copy=yes'])).stdout) as { sandboxID: string; metadata: Record<string, string> };
    sandboxes.add(fork.sandboxID);
    assert.notEqual(fork.sandboxID, id);
    assert.equal(fork.metadata.copy, 'yes');
    assert.equal((await expect(0, ['sbx', 'exec', fork.sandboxID, '--user', 'root', '--', 'cat', '/root/marker'])).stdout, 'v2\n');

    const fromSnap = (await expect(0, ['sbx', 'create', '--snapshot', snap])).stdout.trim();
    sandboxes.add(fromSnap);
    assert.equal((await expect(0, ['sbx', 'exec', fromSnap, '--user', 'root', '--', 'cat', '/root/marker'])).stdout, 'v1\n');

    const rm = await expect(0, ['sbx', 'rm', fork.sandboxID, fromSnap, id]);
    assert.deepEqual(rm.stdout.trim().split('\n'), [fork.sandboxID, fromSnap, id]);
    for (const s of [fork.sandboxID, fromSnap, id]) sandboxes.delete(s);

    assert.equal((await expect(0, ['snap', 'rm', snap])).stdout.trim(), snap);
    snapshots.delete(snap);
    await expect(3, ['snap', 'rm', snap]);
    await expect(3, ['sbx', 'snapshot', 'zzzzzzzzzz']);
  });

  it('pool ls / warm (with progress) / drain, and warm on a jail template is unsupported', async () => {
    const ls = await expect(0, ['pool', 'ls']);
    assert.match(ls.stdout.split('\n')[0]!, /^TEMPLATE\s+BACKEND\s+STATE\s+AVAILABLE\s+IN_USE/);
    assert.match(ls.stdout, /^fakevm\s+bhyve\s+idle\s+0\s+0/m);

    const warm = await expect(0, ['pool', 'warm', 'fakevm', '2']);
    assert.match(warm.stderr, /fakevm: booting fakevm-1\n/);
    assert.match(warm.stderr, /fakevm: fakevm-2 ready \(2\/2\)\n/);
    assert.match(warm.stdout, /^fakevm: 2 available, 0 in use/);
    assert.match((await expect(0, ['pool', 'ls'])).stdout, /^fakevm\s+bhyve\s+idle\s+2\s+0/m);

    const json = await expect(0, ['pool', 'warm', 'fakevm', '--count', '3', '--json']);
    const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { progress?: string; done?: { available: number } });
    assert.deepEqual(lines.filter((l) => l.progress).map((l) => l.progress), ['booting fakevm-3', 'fakevm-3 ready (3/3)']);
    assert.equal(lines.at(-1)!.done!.available, 3);

    const drain = await expect(0, ['pool', 'drain', 'fakevm']);
    assert.match(drain.stdout, /^fakevm: drained \(0 available, 0 in use\)/);
    assert.equal((JSON.parse((await expect(0, ['pool', 'ls', '--json'])).stdout) as { template: string; available: number }[]).find((p) => p.template === 'fakevm')!.available, 0);

    const jail = await expect(5, ['pool', 'warm', 'busybox', '1']);
    assert.match(jail.stderr, /template "busybox" has no warm pool on this gateway \(start it with --jail-pool-size N/);
    await expect(3, ['pool', 'warm', 'nosuch', '1']);
    await expect(3, ['pool', 'drain', 'nosuch']);
  });

  it('sbx connect resumes and sets the lifetime; sbx timeout moves the end; global flags before the command', async () => {
    const env = { COPPICE_URL: undefined, COPPICE_API_KEY: undefined };
    const g = ['--url', gw.url, '--key', gw.key];
    // Global flags before the group, between group and command, and after.
    const id = (await expect(0, [...g, 'sbx', 'create', 'busybox', '--timeout', '600'], env)).stdout.trim();
    sandboxes.add(id);
    await expect(0, ['--url', gw.url, 'sbx', '--key', gw.key, 'pause', id], env);
    const back = JSON.parse((await expect(0, ['sbx', '--json', 'connect', id, '--timeout', '900', ...g], env)).stdout) as { state: string; endAt: string };
    assert.equal(back.state, 'running');
    const left = (iso: string) => Date.parse(iso) - Date.now();
    assert.ok(left(back.endAt) > 890_000 && left(back.endAt) <= 900_000, back.endAt);

    assert.equal((await expect(0, ['sbx', 'timeout', id, '1200'])).stdout.trim(), id);
    const info = JSON.parse((await expect(0, ['--json', 'sbx', 'info', id])).stdout) as { endAt: string };
    assert.ok(left(info.endAt) > 1_190_000 && left(info.endAt) <= 1_200_000, info.endAt);
    await expect(2, ['sbx', 'timeout', id]);
    await expect(2, ['sbx', 'timeout', id, 'soon']);
    await expect(3, ['sbx', 'timeout', 'zzzzzzzzzz', '60']);
    await expect(3, ['sbx', 'connect', 'zzzzzzzzzz']);
    // timeout 0 ends it now.
    await expect(0, ['sbx', 'timeout', id, '0']);
    sandboxes.delete(id);
  });

  it('sbx logs: the latest command\'s output, or a running one\'s so far (then -f to its exit)', async () => {
    const id = (await expect(0, ['sbx', 'create', 'busybox'])).stdout.trim();
    sandboxes.add(id);
    await expect(0, ['sbx', 'exec', id, '--', 'sh', '-c', 'echo one; echo two >&2']);
    const last = await expect(0, ['sbx', 'logs', id]);
    assert.deepEqual([last.stdout, last.stderr], ['one\n', 'two\n']);

    const sb = await Sandbox.get(id, { url: gw.url, apiKey: gw.key });
    const bg = sb.execStream('echo first; read x; echo "then $x"', { stdin: true });
    let seen = '';
    for await (const c of bg) {
      seen += Buffer.from(c.data).toString();
      if (seen.includes('first\n')) break;
    }
    const pid = bg.processID!;
    // Without -f: what there is so far, and back while the command still runs.
    assert.equal((await expect(0, ['sbx', 'logs', id, pid])).stdout, 'first\n');
    const follow = cli(['sbx', 'logs', id, pid, '-f']);
    bg.write('go\n');
    const f = await follow;
    assert.deepEqual([f.code, f.stdout], [0, 'first\nthen go\n']);
    await expect(3, ['sbx', 'logs', id, 'no-such-process']);
    await expect(0, ['sbx', 'rm', id]);
    sandboxes.delete(id);
  });

  it('a reader that goes away is the end of the output: `sbx ls | head -1` exits 0, no stack trace', async () => {
    const ids = await Promise.all([0, 1, 2].map(async () => (await expect(0, ['sbx', 'create', 'busybox'])).stdout.trim()));
    for (const i of ids) sandboxes.add(i);
    const pipe = (tail: string) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const line = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} sbx ls | ${tail}`;
        const child = spawn('bash', ['-o', 'pipefail', '-c', line], { env: { ...process.env, COPPICE_URL: gw.url, COPPICE_API_KEY: gw.key } });
        let out = '';
        let err = '';
        child.stdout.on('data', (b: Buffer) => (out += b));
        child.stderr.on('data', (b: Buffer) => (err += b));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout: out, stderr: err }));
      });
    const head = await pipe('head -1');
    assert.equal(head.code, 0, head.stderr);
    assert.match(head.stdout, /^ID\s+TEMPLATE.*\n$/);
    assert.equal(head.stderr, '');
    // A reader that is gone before coppice writes at all: the write fails with EPIPE.
    const gone = await pipe('true');
    assert.equal(gone.code, 0, gone.stderr);
    assert.equal(gone.stderr, '');
    await expect(0, ['sbx', 'rm', ...ids]);
    for (const i of ids) sandboxes.delete(i);
  });

  it('auth and reachability: 7 for a missing or wrong key, 10 when nothing answers; flags beat the environment', async () => {
    const wrong = await expect(7, ['tpl', 'list', '--key', 'wrong']);
    assert.match(wrong.stderr, /missing or invalid API key.*check --key or COPPICE_API_KEY/);
    const none = await expect(7, ['sbx', 'ls'], { COPPICE_API_KEY: undefined });
    assert.match(none.stderr, /no API key/);
    const down = await expect(10, ['sbx', 'ls', '--url', 'http://127.0.0.1:9']);
    assert.match(down.stderr, /^coppice sbx ls: cannot connect to http:\/\/127\.0\.0\.1:9: .*\n$/);
    const downJson = JSON.parse((await expect(10, ['tpl', 'list', '--json'], { COPPICE_URL: 'http://127.0.0.1:9' })).stdout) as { error: string };
    assert.equal(downJson.error, 'unreachable');
    await expect(0, ['tpl', 'list', '--url', gw.url, '--key', gw.key], { COPPICE_URL: 'http://127.0.0.1:9', COPPICE_API_KEY: 'nope' });
  });
});

describe('coppice CLI against a draining gateway', { skip, timeout: 120_000 }, () => {
  let gw2: TestGateway;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coppice-cli-drain-'));
    const b = bhyveRoot(dir);
    gw2 = await startTestGateway(['--jail-subnet', '10.78.47.0/24', '--bhyve-templates-root', b.imgRoot, '--pool-ctl', b.poolCtl]);
    // The pool's shutdown drain takes a while: the gateway stays in `draining` meanwhile.
    mkdirSync(join(b.imgRoot, '.pool'), { recursive: true });
    writeFileSync(join(b.imgRoot, '.pool', '.slow-drain'), '4');
  });

  after(async () => {
    await gw2?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('new work exits 6 while the gateway drains; reads still work', async () => {
    gw2.app.gateway.sigint();
    assert.equal(gw2.app.gateway.lifecycle, 'draining');
    const env = { COPPICE_URL: gw2.url, COPPICE_API_KEY: gw2.key };
    const r = await expect(6, ['sbx', 'create', 'busybox'], env);
    assert.match(r.stderr, /draining/);
    const json = JSON.parse((await expect(6, ['pool', 'warm', 'fakevm', '1', '--json'], env)).stdout) as { code: number; error: string };
    assert.deepEqual([json.code, json.error], [503, 'draining']);
    await expect(0, ['tpl', 'list'], env);
    assert.equal(await gw2.app.gateway.stopped, 'drained');
  });
});
