// The SDK as a user gets it: `npm pack` of packages/sdk, `npm install <tarball>` in a clean folder
// (offline: ws comes from this repository's own install, packed), then plain `node app.mjs`
// against a real gateway (real runc sandboxes), and `tsc --strict` on a TS file that imports it
// with the tsconfig `tsc --init` writes. Needs root (runc).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const run = promisify(execFile);
const root = process.getuid?.() === 0;
const REPO = new URL('../..', import.meta.url).pathname;
const PKG = join(REPO, 'packages', 'sdk');
const TSC = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');

/** What a user writes: ESM, plain node, the E2B-like calls. Prints one JSON line of results. */
const APP = `
import { Sandbox, CoppiceApiError } from '@coppice/sdk';
const sb = await Sandbox.create('base', { timeoutMs: 120_000 });
try {
  const r = await sb.commands.run('echo hello from $(uname -s)');
  await sb.files.write('/tmp/note.txt', 'written by the sdk');
  const file = await sb.files.read('/tmp/note.txt');
  let missing = null;
  try { await Sandbox.get('sbx-does-not-exist'); } catch (e) { missing = { isApi: e instanceof CoppiceApiError, code: e.code }; }
  console.log(JSON.stringify({ id: sb.sandboxID, stdout: r.stdout, exitCode: r.exitCode, file, missing }));
} finally {
  await sb.kill();
}
`;

/** The types a user leans on, checked under --strict and the stricter defaults of `tsc --init`. */
const TYPED = `
import { Sandbox, CoppiceError, CoppiceApiError, type CommandResult, type EntryInfo, type ExecResult, type SandboxInfo } from '@coppice/sdk';
export async function demo(): Promise<string> {
  const sb = await Sandbox.create('base', { url: 'http://127.0.0.1:3000', apiKey: 'k', timeoutMs: 60_000 });
  const r: ExecResult = await sb.exec(['echo', 'hi']);
  const c: CommandResult = await sb.commands.run('ls', { onStdout: (s: string) => console.log(s.length) });
  const bytes: Uint8Array = await sb.files.read('/x', { format: 'bytes' });
  const text: string = await sb.files.read('/x');
  const entries: EntryInfo[] = await sb.files.list('/');
  const bg = await sb.commands.run('sleep 1', { background: true });
  await bg.exited;
  console.log(c.exitCode, bytes.byteLength, text, entries[0]?.modifiedTime.getTime());
  const info: SandboxInfo = await sb.getInfo();
  for await (const chunk of sb.execStream('ls')) if (chunk.stream === 'stdout') console.log(chunk.data.byteLength);
  try {
    await sb.kill();
  } catch (e) {
    if (e instanceof CoppiceApiError) return e.code + String(e.status);
    if (e instanceof CoppiceError) return e.code;
  }
  return r.stdout + info.state;
}
`;

let gw: TestGateway;
let dir: string;

describe('@coppice/sdk from a packed tarball', { skip: root ? false : 'needs root (runc sandboxes)', timeout: 300_000 }, () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coppice-sdk-pkg-'));
    gw = await startTestGateway(['--jail-subnet', '10.78.150.0/24']);
    // `npm pack` runs the package's prepack (the build), so the tarball is of today's sources.
    const packed = await run('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: PKG });
    const tarball = join(dir, packed.stdout.trim().split('\n').pop()!);
    const ws = await run('npm', ['pack', '--silent', '--pack-destination', dir, join(REPO, 'node_modules', 'ws')]);
    const wsTarball = join(dir, ws.stdout.trim().split('\n').pop()!);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'sdk-user', version: '1.0.0', private: true, type: 'module' }));
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball, wsTarball], { cwd: dir });
  });

  after(async () => {
    // The app kills its sandbox; anything left behind by a failed run goes here.
    if (gw) for (const s of gw.app.gateway.list()) await gw.api('DELETE', `/sandboxes/${s.sandboxID}`).catch(() => undefined);
    await gw?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the installed tree is the SDK and ws, and the package holds only its own files', async () => {
    assert.deepEqual(readdirSync(join(dir, 'node_modules')).filter((n) => !n.startsWith('.')).sort(), ['@coppice', 'ws']);
    const manifest = JSON.parse(readFileSync(join(dir, 'node_modules', '@coppice', 'sdk', 'package.json'), 'utf8'));
    assert.deepEqual(Object.keys(manifest.dependencies), ['ws']);
    const files = (function walk(d: string): string[] {
      return readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
    })(join(dir, 'node_modules', '@coppice', 'sdk'));
    const seen: string[] = [];
    for (const f of files.filter((x) => /\.(js|d\.ts)$/.test(x))) {
      const text = readFileSync(f, 'utf8');
      // Every relative import stays inside the package and names a file that is there.
      const specifiers = [
        ...[...text.matchAll(/^\s*(?:import|export)\b[^'";]*?from\s+'([^']+)'/gm)].map((m) => m[1]!),
        ...[...text.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => m[1]!),
      ];
      for (const s of specifiers.filter((x) => x.startsWith('.'))) {
        assert.ok(!s.endsWith('.ts'), `${f} imports ${s}`);
        assert.ok(files.includes(join(f, '..', s.replace(/\.js$/, f.endsWith('.d.ts') ? '.d.ts' : '.js'))), `${f} imports ${s}, not in the package`);
      }
      for (const s of specifiers.filter((x) => !x.startsWith('.'))) assert.ok(s === 'ws' || s.startsWith('node:'), `${f} imports ${s}`);
      seen.push(...specifiers);
    }
    // The repository's own `coppice/sdk` entry (lib/sdk.mjs) offers the same names.
    const inRepo = Object.keys(await import(join(REPO, 'lib', 'sdk.mjs'))).sort();
    const packaged = Object.keys(await import(join(dir, 'node_modules', '@coppice', 'sdk', 'dist', 'sdk', 'index.js'))).sort();
    assert.deepEqual(inRepo, packaged);
    // The scan did find the imports (the WebSocket client and the protocol files).
    assert.ok(seen.includes('ws') && seen.includes('../protocol/exec-ws.js'), `imports seen: ${seen.join(', ')}`);
    assert.ok(files.some((f) => f.endsWith(join('dist', 'cjs', 'sdk', 'index.js'))), 'no CommonJS build');
  });

  it('plain `node app.mjs`: create, run a command, write and read a file, a typed error, kill', async () => {
    writeFileSync(join(dir, 'app.mjs'), APP);
    const { stdout } = await run(process.execPath, ['app.mjs'], { cwd: dir, env: { ...process.env, COPPICE_URL: gw.url, COPPICE_API_KEY: gw.key } });
    const r = JSON.parse(stdout.trim().split('\n').pop()!);
    assert.equal(r.stdout, 'hello from Linux\n');
    assert.equal(r.exitCode, 0);
    assert.equal(r.file, 'written by the sdk');
    assert.deepEqual(r.missing, { isApi: true, code: 'not_found' });
    // It killed what it made.
    assert.equal((await gw.api('GET', `/sandboxes/${r.id}`)).status, 404);
  });

  it('require() works too (CommonJS build): same names, and it talks to the gateway', async () => {
    writeFileSync(
      join(dir, 'app.cjs'),
      `const sdk = require('@coppice/sdk');
       sdk.Sandbox.get('zzzzzzzzzz').then(() => process.exit(1), (e) => {
         console.log(JSON.stringify({ names: Object.keys(sdk).sort(), notFound: e instanceof sdk.NotFoundError, code: e.code }));
       });`,
    );
    const { stdout } = await run(process.execPath, ['app.cjs'], { cwd: dir, env: { ...process.env, COPPICE_URL: gw.url, COPPICE_API_KEY: gw.key } });
    const r = JSON.parse(stdout);
    const esm = Object.keys(await import(join(dir, 'node_modules', '@coppice', 'sdk', 'dist', 'sdk', 'index.js'))).sort();
    assert.deepEqual(r.names.filter((n: string) => n !== '__esModule'), esm);
    assert.deepEqual([r.notFound, r.code], [true, 'not_found']);
  });

  it('tsc --strict --noEmit with the tsconfig of `tsc --init` (no @types, no special options)', async () => {
    await run(process.execPath, [TSC, '--init'], { cwd: dir });
    writeFileSync(join(dir, 'typed.ts'), TYPED);
    // A CommonJS TypeScript file gets the CommonJS types (require condition).
    writeFileSync(
      join(dir, 'typed-cjs.cts'),
      `import sdk = require('@coppice/sdk');\nasync function f(): Promise<number | null> {\n  const sb = await sdk.Sandbox.create('base', { timeoutMs: 1000 });\n  return (await sb.commands.run('true')).exitCode;\n}\nexport = f;\n`,
    );
    const check = (args: string[]) =>
      run(process.execPath, [TSC, '--strict', '--noEmit', '-p', '.', ...args], { cwd: dir }).catch((e: { stdout: string; stderr: string }) => {
        assert.fail(`tsc ${args.join(' ')} failed:\n${e.stdout}${e.stderr}`);
      });
    await check([]);
    // The package's own .d.ts too, not only the user's file.
    await check(['--skipLibCheck', 'false']);
  });
});
