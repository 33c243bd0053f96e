import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AnyActorRef } from 'xstate';
import { Reaper } from '../../src/actors/reaper.ts';

const T0 = 1_000_000;
const fakeRef = (name: string, log: string[]) => ({ send: (e: { type: string }) => log.push(`${name}:${e.type}`) }) as unknown as AnyActorRef;

test('expires actors in deadline order, each once, with one timer', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  const log: string[] = [];
  const r = new Reaper();
  r.schedule(fakeRef('c', log), T0 + 300);
  r.schedule(fakeRef('a', log), T0 + 100);
  r.schedule(fakeRef('b', log), T0 + 200);
  t.mock.timers.tick(99);
  assert.deepEqual(log, []);
  t.mock.timers.tick(1);
  assert.deepEqual(log, ['a:EXPIRE']);
  t.mock.timers.tick(250);
  assert.deepEqual(log, ['a:EXPIRE', 'b:EXPIRE', 'c:EXPIRE']);
  assert.equal(r.size, 0);
});

test('a rescheduled deadline replaces the old one, later or earlier', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  const log: string[] = [];
  const r = new Reaper();
  const a = fakeRef('a', log);
  const b = fakeRef('b', log);
  r.schedule(a, T0 + 100);
  r.schedule(a, T0 + 500); // extended (connect)
  r.schedule(b, T0 + 400);
  r.schedule(b, T0 + 50); // shortened (/timeout)
  t.mock.timers.tick(60);
  assert.deepEqual(log, ['b:EXPIRE']);
  t.mock.timers.tick(100);
  assert.deepEqual(log, ['b:EXPIRE'], 'the old deadline of a is stale');
  t.mock.timers.tick(400);
  assert.deepEqual(log, ['b:EXPIRE', 'a:EXPIRE']);
});

test('cancel stops an expiry', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  const log: string[] = [];
  const r = new Reaper();
  const a = fakeRef('a', log);
  r.schedule(a, T0 + 100);
  r.cancel(a);
  t.mock.timers.tick(1000);
  assert.deepEqual(log, []);
});

test('a deadline beyond one timer (> 2^31 ms) neither fires early nor never', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  const log: string[] = [];
  const r = new Reaper();
  const far = 3 * 2 ** 31;
  r.schedule(fakeRef('far', log), T0 + far);
  t.mock.timers.tick(2 ** 31);
  assert.deepEqual(log, []);
  t.mock.timers.tick(far - 2 ** 31);
  assert.deepEqual(log, ['far:EXPIRE']);
});
