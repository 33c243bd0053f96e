import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Admission } from '../../src/actors/admission.ts';
import { CoppiceError } from '../../src/errors.ts';
import { httpStatusOf } from '../../src/http/errors.ts';

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

test('runs at most `concurrent` at once, queues up to `queue`, refuses beyond with 429 and Retry-After', async () => {
  const a = new Admission(2, 1);
  const gates = [deferred(), deferred(), deferred()];
  const started: number[] = [];
  const runs = gates.map((g, i) => a.run(async () => { started.push(i); await g.promise; return i; }));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [0, 1], 'the third waits');
  assert.equal(a.queued, 1);
  await assert.rejects(a.run(async () => 9), (e: unknown) => e instanceof CoppiceError && e.code === 'too_many_requests' && httpStatusOf(e.code) === 429 && (e.retryAfterS ?? 0) > 0);
  gates[0]!.resolve();
  await runs[0];
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [0, 1, 2], 'a finished run hands its slot to the next in line');
  gates[1]!.resolve();
  gates[2]!.resolve();
  assert.deepEqual(await Promise.all(runs), [0, 1, 2]);
  assert.equal(a.inFlight, 0);
  assert.equal(a.queued, 0);
});

test('a failing run frees its slot', async () => {
  const a = new Admission(1, 0);
  await assert.rejects(a.run(async () => { throw new Error('boom'); }), /boom/);
  assert.equal(await a.run(async () => 'next'), 'next');
});
