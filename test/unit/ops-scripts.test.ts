// Every host-side script under ops/ must parse (`sh -n` / `bash -n`, per its shebang) and pass
// shellcheck: scripts that only run on FreeBSD hosts get no other check here.
import { execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repo = join(import.meta.dirname, '..', '..');
const opsDir = join(repo, 'ops');

function scripts(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return scripts(p);
    return e.isFile() && e.name.endsWith('.sh') ? [p] : [];
  });
}

const found = scripts(opsDir).sort();

test('ops/ has scripts to check', () => {
  assert.ok(found.length > 0, 'no *.sh under ops/');
});

for (const file of found) {
  const name = relative(repo, file);
  test(`${name}: parses and passes shellcheck`, async () => {
    const shebang = readFileSync(file, 'utf8').split('\n', 1)[0];
    const shell = /\bbash\b/.test(shebang) ? 'bash' : 'sh';
    await run(shell, ['-n', file]).catch((err: { stderr?: string }) => {
      assert.fail(`${shell} -n ${name}:\n${err.stderr ?? err}`);
    });
    await run('shellcheck', ['--external-sources', file], { cwd: repo }).catch((err: { stdout?: string }) => {
      assert.fail(`shellcheck ${name}:\n${err.stdout ?? err}`);
    });
  });
}

test('ops/bhyve/build-image.sh runs as the README writes it (`sh ...`, dash on Debian): it re-runs itself under bash', async () => {
  // Its usage line comes from bash, after `set -o pipefail`, which dash alone would refuse.
  const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
    const p = spawn('sh', ['ops/bhyve/build-image.sh'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c) => (err += c));
    p.on('exit', (code) => resolve({ code, err }));
  });
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /^usage: /m);
  assert.doesNotMatch(r.err, /pipefail|Illegal option/);
});
