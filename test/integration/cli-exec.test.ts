// `coppice exec` as a user runs it: the real bin/coppice.mjs as a child process, against a real
// gateway (in-process) and real runc sandboxes. Needs root.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startApp, type App } from '../../src/app.ts';
import { configSchema } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { Sandbox } from '../../src/sdk/index.ts';

const root = process.getuid?.() === 0;
const skip = root ? false : 'needs root (runc sandboxes)';
const API_KEY = 'cli-exec-test-key';
const BIN = new URL('../../bin/coppice.mjs', import.meta.url).pathname;

let app: App;
let stateDir: string;
let sb: Sandbox;

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

function cli(args: string[], opts: { stdin?: Buffer; env?: Record<string, string>; onSpawn?: (p: ReturnType<typeof spawn>) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'exec', ...args], {
      env: { ...process.env, COPPICE_URL: app.url, COPPICE_API_KEY: API_KEY, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.on('error', () => undefined);
    if (opts.stdin) child.stdin.end(opts.stdin);
    else if (!opts.onSpawn) child.stdin.end();
    opts.onSpawn?.(child);
  });
}

describe('coppice exec (real CLI, real gateway, real runc)', { skip, timeout: 180_000 }, () => {
  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'coppice-cli-state-'));
    const config = configSchema.parse({
      listen: '127.0.0.1:0',
      stateDir,
      templatesRoot: '/var/lib/coppice/templates',
      jailSubnet: '10.78.41.0/24',
      logLevel: 'silent',
    });
    app = await startApp(config, { logger: createLogger('silent'), apiKey: API_KEY });
    for (let i = 0; i < 100 && app.gateway.lifecycle !== 'serving'; i++) await sleep(50);
    sb = await Sandbox.create('busybox', { url: app.url, apiKey: API_KEY });
  });

  after(async () => {
    await sb?.kill();
    await app?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('streams stdout and stderr and exits with the command\'s code', async () => {
    const r = await cli([sb.sandboxID, '--', 'sh', '-c', 'printf out; printf err >&2; exit 7']);
    assert.equal(r.code, 7);
    assert.equal(r.stdout.toString(), 'out');
    assert.equal(r.stderr, 'err');
    assert.equal((await cli([sb.sandboxID, '--', 'true'])).code, 0);
  });

  it('passes any bytes through unchanged (1 MB of random data, sha256 checked inside)', async () => {
    const input = randomBytes(1_000_000);
    // stdin -> cat -> stdout, and the sandbox's own hash of what it received on stderr.
    const r = await cli([sb.sandboxID, '--', 'sh', '-c', 'cat > /tmp/in && sha256sum /tmp/in >&2 && cat /tmp/in'], { stdin: input });
    assert.equal(r.code, 0, r.stderr);
    const hash = createHash('sha256').update(input).digest('hex');
    assert.equal(r.stderr.split(/\s+/)[0], hash);
    assert.ok(r.stdout.equals(input), 'stdout bytes equal the input');
  });

  it('forwards stdin until EOF (close-stdin ends cat)', async () => {
    const r = await cli([sb.sandboxID, '--', 'cat'], { stdin: Buffer.from('line one\nline two\n') });
    assert.equal(r.code, 0);
    assert.equal(r.stdout.toString(), 'line one\nline two\n');
  });

  it('forwards SIGINT: the command dies of it and the CLI exits 128+2', async () => {
    const r = await cli([sb.sandboxID, '--', 'sleep', '100'], {
      onSpawn: (child) => {
        void (async () => {
          // Wait until the command runs in the sandbox, then Ctrl-C the CLI.
          for (let i = 0; i < 100; i++) {
            const procs = await sb.processes();
            if (procs.some((p) => p.state === 'running' && p.argv[0] === 'sleep')) break;
            await sleep(50);
          }
          child.kill('SIGINT');
        })();
      },
    });
    assert.equal(r.code, 130, r.stderr);
  });

  it('--timeout-ms ends the command with status 124', async () => {
    const r = await cli([sb.sandboxID, '--timeout-ms', '300', '--', 'sleep', '30']);
    assert.equal(r.code, 124);
  });

  it('--json prints started, base64 output and the exit as JSON lines', async () => {
    const r = await cli([sb.sandboxID, '--json', '--', 'sh', '-c', 'printf "\\377\\000x"; exit 5']);
    assert.equal(r.code, 5);
    const lines = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines[0]!.type, 'started');
    const out = Buffer.concat(lines.filter((l) => l.type === 'stdout').map((l) => Buffer.from(l.data as string, 'base64')));
    assert.deepEqual([...out], [0xff, 0x00, 0x78]);
    const exit = lines.at(-1)!;
    assert.equal(exit.type, 'exit');
    assert.equal(exit.exitCode, 5);
  });

  it('--attach re-attaches to a detached command and exits with its code', async () => {
    const s = sb.execStream('sleep 0.5; echo late; exit 9');
    const processID = await s.ready;
    s.detach();
    const r = await cli([sb.sandboxID, '--attach', processID]);
    assert.equal(r.code, 9);
    assert.equal(r.stdout.toString(), 'late\n');
  });

  it('gateway errors exit 125 with the message; bad usage exits 2', async () => {
    const missing = await cli(['zzzzzzzzzz', '--', 'true']);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /not found/);
    const badKey = await cli([sb.sandboxID, '--key', 'wrong', '--', 'true']);
    assert.equal(badKey.code, 125);
    assert.match(badKey.stderr, /API key/);
    const noCmd = await cli([sb.sandboxID]);
    assert.equal(noCmd.code, 2);
    // --url/--key flags win over the environment.
    const flags = await cli(['--url', app.url, '--key', API_KEY, sb.sandboxID, '--', 'echo', 'flags'], { env: { COPPICE_URL: 'http://127.0.0.1:9', COPPICE_API_KEY: 'x' } });
    assert.equal(flags.code, 0, flags.stderr);
    assert.equal(flags.stdout.toString(), 'flags\n');
  });
});
