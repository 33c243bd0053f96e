// `coppice serve` as an operator runs it (the real bin/coppice.mjs, a child process): an address
// already in use is one line and exit 2, and nothing is left behind (no nft table, no process).
// Needs root (nft, the jail backend). No other gateway may run meanwhile (the host lock).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TEMPLATES_ROOT } from '../helpers/gateway.ts';

const root = process.getuid?.() === 0;
const BIN = new URL('../../bin/coppice.mjs', import.meta.url).pathname;

const tables = () => execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();

function serve(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, COPPICE_API_KEY: 'serve-test-key' };
    const child = spawn(process.execPath, [BIN, 'serve', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: out, stderr: err }));
  });
}

describe('coppice serve on an address already in use', { skip: root ? false : 'needs root (nft, runc)', timeout: 120_000 }, () => {
  let holder: Server;
  let port: number;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coppice-serve-busy-'));
    holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    port = (holder.address() as { port: number }).port;
  });

  after(async () => {
    await new Promise<void>((r) => holder?.close(() => r()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('exits 2 with one line, and leaves no nft table', async () => {
    const before = tables();
    const r = await serve(['--listen', `127.0.0.1:${port}`, '--state-dir', dir, '--templates-root', TEMPLATES_ROOT, '--jail-subnet', '10.78.151.0/24', '--log-level', 'silent']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `coppice serve: cannot listen on 127.0.0.1:${port}: address already in use\n`);
    assert.equal(r.stdout, '');
    assert.deepEqual(tables(), before);
  });

  it('the same on a free port serves, devtools page included (so the test above fails for the port, not the setup)', async () => {
    const free = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const child = spawn(process.execPath, [BIN, 'serve', '--listen', `127.0.0.1:${free}`, '--state-dir', dir, '--templates-root', TEMPLATES_ROOT, '--jail-subnet', '10.78.151.0/24', '--log-level', 'silent'], {
      env: { ...process.env, COPPICE_API_KEY: 'serve-test-key' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b));
    const exited = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    try {
      for (let i = 0; i < 300 && !err.includes('listening on'); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(err, new RegExp(`coppice listening on http://127\\.0\\.0\\.1:${free}`));
      const health = await fetch(`http://127.0.0.1:${free}/health`);
      assert.ok([200, 503].includes(health.status));
      // The compiled gateway still serves the devtools page (static files are not compiled).
      const page = await fetch(`http://127.0.0.1:${free}/devtools`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<html/i);
    } finally {
      child.kill('SIGINT');
      assert.equal(await exited, 0, err);
    }
  });
});
