// The placement statechart (machines/placement.ts) with recording fake effects: pool hit or cold,
// the retry on a vanished slot, who may use a slot, and the fork's snapshot being dropped always.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createActor, fromPromise } from 'xstate';
import { placementMachine, SLOT_ATTEMPTS, type PlacementInput, type PlacementRequest } from '../../machines/placement.ts';
import type { Reply } from '../../machines/types.ts';
import { CoppiceError } from '../../src/errors.ts';

const LIMITS = { memoryMiB: 512, cpus: 1, pids: 512 };

interface Script {
  /** What successive TAKEs hand out (null = pool empty). */
  slots?: (string | null)[];
  /** Checkout of a slot fails with this (by slot id). */
  checkoutError?: Record<string, Error>;
  coldError?: Error;
  snapshotError?: Error;
}

function run(request: Partial<PlacementRequest>, opts: { slotPool?: boolean; script?: Script } = {}) {
  const calls: string[] = [];
  const script = opts.script ?? {};
  const slots = [...(script.slots ?? [])];
  const machine = placementMachine.provide({
    actors: {
      snapshot: fromPromise(async ({ input }) => {
        calls.push(`snapshot ${input.sandboxId}`);
        if (script.snapshotError) throw script.snapshotError;
        return { snapshotID: 'snap1', backend: 'jail' };
      }),
      takeSlot: fromPromise(async () => {
        calls.push('take');
        return { slot: slots.length ? slots.shift()! : null };
      }),
      checkout: fromPromise(async ({ input }) => {
        calls.push(`checkout ${input.slot}`);
        const err = script.checkoutError?.[input.slot];
        if (err) throw err;
      }),
      spawnCold: fromPromise(async ({ input }) => {
        calls.push(`cold${input.fromSnapshot ? ` from ${input.fromSnapshot.snapshotID}${input.fromSnapshot.consume ? ' consume' : ''}` : ''}`);
        if (script.coldError) throw script.coldError;
        return 'cold000001';
      }),
      dropSnapshot: fromPromise(async ({ input }) => {
        calls.push(`drop ${input.snapshotID}`);
      }),
    },
  });
  const input: PlacementInput = {
    reqId: 'r1',
    slotPool: opts.slotPool ?? true,
    request: { template: 'base', backend: 'jail', timeoutMs: 60_000, limits: LIMITS, standardLimits: true, internet: false, ...request },
  };
  const actor = createActor(machine, { input });
  const reply = new Promise<Reply>((resolve) => actor.on('reply', resolve));
  const done = new Promise<void>((resolve) => actor.subscribe({ complete: resolve }));
  actor.start();
  return { calls, reply, done };
}

describe('placement', () => {
  test('a request a slot can serve is a pool hit: one TAKE, one CHECKOUT, no cold create', async () => {
    const p = run({}, { script: { slots: ['slot000001'] } });
    assert.deepEqual(await p.reply, { type: 'reply', reqId: 'r1', ok: true, value: { sandboxId: 'slot000001', via: 'pool' } });
    await p.done;
    assert.deepEqual(p.calls, ['take', 'checkout slot000001']);
  });

  test('an empty pool means a cold create', async () => {
    const p = run({}, { script: { slots: [null] } });
    assert.deepEqual((await p.reply as { value: unknown }).value, { sandboxId: 'cold000001', via: 'cold' });
    assert.deepEqual(p.calls, ['take', 'cold']);
  });

  for (const [what, request, slotPool] of [
    ['custom limits', { standardLimits: false }, true],
    ['egress', { internet: true }, true],
    ['a snapshot', { fromSnapshot: { snapshotID: 'snapX' } }, true],
    ['a template without a slot pool', {}, false],
  ] as const) {
    test(`a request with ${what} never takes a slot`, async () => {
      const p = run(request, { slotPool, script: { slots: ['slot000001'] } });
      assert.equal((await p.reply).ok, true);
      assert.ok(!p.calls.includes('take'), p.calls.join(','));
      assert.equal(p.calls.at(-1)?.startsWith('cold'), true);
    });
  }

  test('a slot that vanished (conflict) is followed by the next one', async () => {
    const gone = new CoppiceError('conflict', 'pool slot is gone');
    const p = run({}, { script: { slots: ['slot000001', 'slot000002'], checkoutError: { slot000001: gone } } });
    assert.deepEqual((await p.reply as { value: unknown }).value, { sandboxId: 'slot000002', via: 'pool' });
    assert.deepEqual(p.calls, ['take', 'checkout slot000001', 'take', 'checkout slot000002']);
  });

  test(`after ${SLOT_ATTEMPTS} vanished slots the create goes cold`, async () => {
    const gone = new CoppiceError('conflict', 'gone');
    const ids = ['s000000001', 's000000002', 's000000003', 's000000004'];
    const p = run({}, { script: { slots: ids, checkoutError: Object.fromEntries(ids.map((i) => [i, gone])) } });
    assert.deepEqual((await p.reply as { value: unknown }).value, { sandboxId: 'cold000001', via: 'cold' });
    assert.equal(p.calls.filter((c) => c === 'take').length, SLOT_ATTEMPTS);
    assert.equal(p.calls.at(-1), 'cold');
  });

  test('a checkout failing for another reason fails the create with its code (no cold retry)', async () => {
    const p = run({}, { script: { slots: ['slot000001'], checkoutError: { slot000001: new CoppiceError('backend_failed', 'thaw failed') } } });
    const r = await p.reply;
    assert.equal(r.ok, false);
    assert.deepEqual(r.ok ? null : r.error, { code: 'backend_failed', message: 'thaw failed' });
    assert.ok(!p.calls.includes('cold'));
  });

  test('a fork snapshots the source, creates cold from it (consumed), and drops the snapshot', async () => {
    const p = run({ forkOf: 'src0000001' }, { script: { slots: ['slot000001'] } });
    assert.equal((await p.reply).ok, true);
    assert.deepEqual(p.calls, ['snapshot src0000001', 'cold from snap1 consume', 'drop snap1']);
  });

  test('a fork whose create fails still drops its snapshot, and reports the create error', async () => {
    const p = run({ forkOf: 'src0000001' }, { script: { coldError: new CoppiceError('backend_failed', 'runc create failed') } });
    const r = await p.reply;
    assert.equal(r.ok ? null : r.error.message, 'runc create failed');
    assert.deepEqual(p.calls, ['snapshot src0000001', 'cold from snap1 consume', 'drop snap1']);
  });

  test('a fork whose snapshot fails creates nothing and drops nothing', async () => {
    const p = run({ forkOf: 'src0000001' }, { script: { snapshotError: new CoppiceError('conflict', 'sandbox is busy') } });
    const r = await p.reply;
    assert.equal(r.ok ? null : r.error.code, 'conflict');
    assert.deepEqual(p.calls, ['snapshot src0000001']);
  });

  test('an effect error that is not the gateway\'s own is a backend failure', async () => {
    const p = run({}, { slotPool: false, script: { coldError: Object.assign(new Error('ENOSPC: no space'), { code: 'ENOSPC' }) } });
    const r = await p.reply;
    assert.equal(r.ok ? null : r.error.code, 'backend_failed');
  });
});
