// The pool statechart (machines/pool.ts) with controlled effects: a slot handed out by TAKE never
// comes back through a refresh or a refill that started before the TAKE (their results are
// deltas, not lists), and the pool refills to its size after a take.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createActor, fromPromise } from 'xstate';
import { poolMachine, type PoolEffectInput, type PoolStats } from '../../machines/pool.ts';
import type { Reply } from '../../machines/types.ts';

const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};

test('a slot taken while a refresh is in flight is not resurrected by it; the pool refills', async () => {
  let made = 0;
  const heldStats: { input: PoolEffectInput; resolve: (s: PoolStats) => void }[] = [];
  const machine = poolMachine.provide({
    actors: {
      warm: fromPromise<PoolStats, PoolEffectInput & { count: number }>(async ({ input }) => {
        const fresh = Array.from({ length: Math.max(0, input.count - input.slots.length) }, () => `slot${String(++made).padStart(6, '0')}`);
        return { available: input.slots.length + fresh.length, inUse: 0, made: fresh, gone: [] };
      }),
      // Every refresh waits for the test: it saw every slot of its input parked.
      stats: fromPromise<PoolStats, PoolEffectInput>(
        ({ input }) => new Promise((resolve) => heldStats.push({ input, resolve })),
      ),
    },
  });
  const pool = createActor(machine, { input: { template: 'busybox', backend: 'jail', size: 2 } });
  const replies: Reply[] = [];
  pool.on('reply', (r: Reply) => replies.push(r));
  pool.start();
  await turns();
  // The first refresh (started empty) lands: it reports nothing gone; the background fill made 2.
  heldStats.shift()?.resolve({ available: 0, inUse: 0, gone: [] });
  await turns();
  assert.deepEqual(pool.getSnapshot().context.slots, ['slot000001', 'slot000002']);

  // A refresh starts now, seeing both slots parked...
  pool.send({ type: 'REFRESH' });
  await turns();
  const stale = heldStats.shift()!;
  assert.deepEqual(stale.input.slots, ['slot000001', 'slot000002']);
  // ...then a create takes one (and the pool refills behind it)...
  pool.send({ type: 'TAKE', reqId: 't1' });
  await turns();
  assert.deepEqual((replies.find((r) => r.reqId === 't1') as { value: unknown }).value, { slot: 'slot000001' });
  // ...then the stale refresh lands.
  // (It also carries the full list it saw, as slot stats once did: the machine must not use it.)
  stale.resolve({ available: 2, inUse: 0, gone: [], ...{ slots: stale.input.slots } } as PoolStats);
  await turns();
  const slots = pool.getSnapshot().context.slots;
  assert.ok(!slots.includes('slot000001'), `the taken slot is not back: ${slots.join(',')}`);
  assert.deepEqual(slots, ['slot000002', 'slot000003'], 'refilled to its size');
  assert.equal(pool.getSnapshot().context.available, 2);

  // Every later TAKE hands out a different slot.
  pool.send({ type: 'TAKE', reqId: 't2' });
  await turns();
  assert.deepEqual((replies.find((r) => r.reqId === 't2') as { value: unknown }).value, { slot: 'slot000002' });
  pool.stop();
});

test('a refresh that finds a slot gone (destroyed) drops it and the pool refills', async () => {
  let made = 0;
  let goneNext: string[] = [];
  const machine = poolMachine.provide({
    actors: {
      warm: fromPromise<PoolStats, PoolEffectInput & { count: number }>(async ({ input }) => {
        const fresh = Array.from({ length: Math.max(0, input.count - input.slots.length) }, () => `slot${String(++made).padStart(6, '0')}`);
        return { available: input.slots.length + fresh.length, inUse: 0, made: fresh, gone: [] };
      }),
      stats: fromPromise<PoolStats, PoolEffectInput>(async () => {
        const gone = goneNext;
        goneNext = [];
        return { available: 0, inUse: 0, gone };
      }),
    },
  });
  const pool = createActor(machine, { input: { template: 'busybox', backend: 'jail', size: 2 } });
  pool.start();
  await turns(10);
  assert.deepEqual(pool.getSnapshot().context.slots, ['slot000001', 'slot000002']);
  goneNext = ['slot000001'];
  pool.send({ type: 'REFRESH' });
  await turns(10);
  assert.deepEqual(pool.getSnapshot().context.slots, ['slot000002', 'slot000003']);
  pool.stop();
});
