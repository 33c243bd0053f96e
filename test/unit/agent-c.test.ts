// coppice-agent's own C checks: the agent compiles warning-free (-Wall -Wextra -Werror, static), the
// frame decoders' unit tests pass under ASan/UBSan, and the frame parser survives a seeded
// mutational fuzz run (agent/test/fuzz_frame.c) under the same sanitizers.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';

const run = promisify(execFile);
const agentDir = join(import.meta.dirname, '..', '..', 'agent');
const build = mkdtempSync(join(tmpdir(), 'coppice-agent-c-'));
after(() => rmSync(build, { recursive: true, force: true }));

async function make(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run('make', ['-s', '-C', agentDir, `BUILD=${build}`, ...args], { maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    assert.fail(`make ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
  }
}

/** An ELF64 executable's program header types (PT_INTERP = 3 means it needs a dynamic loader). */
function programHeaderTypes(elf: Buffer): number[] {
  assert.equal(elf.subarray(0, 4).toString('latin1'), '\x7fELF');
  assert.equal(elf[4], 2, 'not ELF64');
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  return Array.from({ length: phnum }, (_, i) => elf.readUInt32LE(phoff + i * phentsize));
}

test('the agent builds static (no dynamic loader) and warning-free', async () => {
  const out = join(build, 'coppice-agent');
  await make(`OUT=${out}`, out);
  const types = programHeaderTypes(readFileSync(out));
  assert.ok(types.length > 0);
  assert.ok(!types.includes(3), 'the agent has a PT_INTERP: it is dynamically linked');
});

test('frame decoder unit tests pass under ASan/UBSan', async () => {
  const { stdout } = await make('test');
  const m = /frame_test: (\d+) checks, (\d+) failed/.exec(stdout);
  assert.ok(m, `no summary in:\n${stdout}`);
  assert.ok(Number(m[1]) > 100, `only ${m[1]} checks ran`);
  assert.equal(m[2], '0');
});

// Deterministic: fixed seeds, a fixed number of mutated streams (about a second each).
for (const seed of [1, 20261202]) {
  test(`frame parser fuzz run, seed ${seed}: no sanitizer report, no broken invariant`, async () => {
    const { stdout } = await make('fuzz', `SEED=${seed}`, 'ITERS=150000');
    assert.match(stdout, new RegExp(`fuzz_frame: seed ${seed}, 150000 inputs, no crash`));
  });
}
