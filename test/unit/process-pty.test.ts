// The process actor with the real runner over an in-memory ExecProcess: a pty request reaches the
// backend's ExecSpec, RESIZE events reach the command's resize(), and a backend that refuses a
// terminal is an exit with its error already on the channel when the start returns.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { createActor, waitFor } from 'xstate';
import { processMachine } from '../../machines/process.ts';
import type { ExecRequest } from '../../machines/types.ts';
import { ProcessChannel } from '../../src/actors/process-channel.ts';
import { createRunner } from '../../src/actors/runner.ts';
import type { Backend, ExecProcess, ExecSpec, SandboxHandle } from '../../src/backends/types.ts';
import { CoppiceError } from '../../src/errors.ts';

const HANDLE: SandboxHandle = { id: 'sb1', backend: 'jail', template: 'base', ip: '10.78.0.2', data: {} };

/** A command that runs until stdin ends, and records what it was asked to do. */
function recordingBackend(opts: { refusePty?: boolean } = {}) {
  const specs: ExecSpec[] = [];
  const resizes: [number, number][] = [];
  const backend = {
    exec(_h: SandboxHandle, spec: ExecSpec): ExecProcess {
      if (opts.refusePty && spec.pty) throw new CoppiceError('unsupported', 'pty: no terminal here', { field: 'pty' });
      specs.push(spec);
      const stdout = new PassThrough();
      const stderr = new PassThrough();
      const stdin = new PassThrough();
      let settle!: (v: { exitCode: number | null; signal: string | null }) => void;
      const exited = new Promise<{ exitCode: number | null; signal: string | null }>((r) => (settle = r));
      stdin.resume();
      stdin.on('end', () => {
        stdout.end();
        stderr.end();
        settle({ exitCode: 0, signal: null });
      });
      return { stdout, stderr, stdin, exited, kill: () => undefined, ...(spec.pty ? { resize: (c: number, r: number) => void resizes.push([c, r]) } : {}) };
    },
  } as unknown as Backend;
  return { backend, specs, resizes };
}

function run(backend: Backend, request: ExecRequest) {
  const channel = new ProcessChannel('1', request.argv);
  const actor = createActor(processMachine.provide({ actors: { run: createRunner(() => backend) } }), {
    input: { processId: '1', request, handle: HANDLE, channel },
  });
  actor.start();
  return { actor, channel };
}

test('a pty request reaches the backend, RESIZE reaches resize(), in order with stdin', async () => {
  const b = recordingBackend();
  const { actor, channel } = run(b.backend, { argv: ['sh'], timeoutMs: 0, keepStdinOpen: true, pty: { cols: 80, rows: 24 } });
  assert.deepEqual(b.specs[0]?.pty, { cols: 80, rows: 24 });
  actor.send({ type: 'RESIZE', cols: 120, rows: 40 });
  actor.send({ type: 'RESIZE', cols: 100, rows: 30 });
  assert.deepEqual(b.resizes, [
    [120, 40],
    [100, 30],
  ]);
  actor.send({ type: 'CLOSE_STDIN' });
  assert.deepEqual((await channel.exited).exitCode, 0);
  await waitFor(actor, (s) => s.status === 'done');
});

test('without pty the spec has none, and RESIZE is ignored (no terminal to resize)', async () => {
  const b = recordingBackend();
  const { actor, channel } = run(b.backend, { argv: ['sh'], timeoutMs: 0, keepStdinOpen: true });
  assert.equal(b.specs[0]?.pty, undefined);
  actor.send({ type: 'RESIZE', cols: 120, rows: 40 });
  assert.deepEqual(b.resizes, []);
  actor.send({ type: 'CLOSE_STDIN' });
  assert.equal((await channel.exited).exitCode, 0);
});

test('a backend that refuses the terminal: the channel has the error (field pty) as soon as the actor started', async () => {
  const b = recordingBackend({ refusePty: true });
  const { actor, channel } = run(b.backend, { argv: ['sh'], timeoutMs: 0, pty: { cols: 80, rows: 24 } });
  assert.deepEqual(channel.exit, { exitCode: null, signal: null, error: { code: 'unsupported', message: 'pty: no terminal here', field: 'pty' } });
  assert.equal(b.specs.length, 0, 'nothing ran');
  const done = await waitFor(actor, (s) => s.status === 'done');
  assert.equal(done.output?.exit.error?.field, 'pty');
});
