// Where the gateway's key comes from: the environment, a file, or generated once and kept.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { resolveApiKey } from '../../src/app.ts';
import { parseServeArgs } from '../../src/config.ts';

test('COPPICE_API_KEY wins, then --api-key-file, else a key is generated on first run and reused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coppice-key-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'key-file');
  writeFileSync(file, 'from-file\n');

  const withFile = parseServeArgs(['--state-dir', dir, '--api-key-file', file]);
  assert.deepEqual(resolveApiKey(withFile, { COPPICE_API_KEY: 'from-env' }), { key: 'from-env', source: 'COPPICE_API_KEY' });
  assert.deepEqual(resolveApiKey(withFile, {}), { key: 'from-file', source: file });

  const bare = parseServeArgs(['--state-dir', dir]);
  const first = resolveApiKey(bare, {});
  // E2B's format: the E2B SDKs that validate keys (Python >= 2.25) accept only `^e2b_[0-9a-f]+$`.
  assert.match(first.key, /^e2b_[0-9a-f]{40}$/);
  assert.match(first.source, /generated/);
  const stored = join(dir, 'api-key');
  assert.equal(readFileSync(stored, 'utf8').trim(), first.key);
  assert.equal(statSync(stored).mode & 0o777, 0o600, 'only root can read it');
  const second = resolveApiKey(bare, {});
  assert.equal(second.key, first.key, 'the same key on the next run');
  assert.doesNotMatch(second.source, /generated/);
});

test('an empty --api-key-file is refused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coppice-key-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'empty'), '\n');
  assert.throws(() => resolveApiKey(parseServeArgs(['--state-dir', dir, '--api-key-file', join(dir, 'empty')]), {}), /is empty/);
});

test('a key already stored or set in any format keeps working (not rewritten to the E2B format)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'coppice-key-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'api-key'), 'cpc_older-generated-key\n');
  const bare = parseServeArgs(['--state-dir', dir]);
  assert.equal(resolveApiKey(bare, {}).key, 'cpc_older-generated-key');
  assert.equal(readFileSync(join(dir, 'api-key'), 'utf8').trim(), 'cpc_older-generated-key');
  assert.equal(resolveApiKey(bare, { COPPICE_API_KEY: 'operator-chosen' }).key, 'operator-chosen');
});
