// ProcessChannel (src/actors/process-channel.ts): output nobody reads is paced (the source is
// paused once a ring's worth has come, then let through a slice per tick) and a reader attaching
// lifts it; buffered captures are never paced and are handed over (released) after the exit.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { ProcessChannel, UNREAD_SLICE, UNREAD_TICK_MS, type Reader } from '../../src/actors/process-channel.ts';

function source() {
  const s = { paused: false, pauses: 0, pause: () => ((s.paused = true), s.pauses++), resume: () => (s.paused = false) };
  return s;
}
const reader = (): Reader => ({ ready: () => true, data: () => undefined, dropped: () => undefined, exit: () => undefined });
const KiB = 1024;

describe('ProcessChannel pacing of unread output', () => {
  test('paused after a ring of unread output, a slice per tick, lifted by a reader', async () => {
    const ch = new ProcessChannel('1', ['cat'], { replayLimit: 256 * KiB });
    const src = source();
    ch.setSource(src);
    const chunk = Buffer.alloc(64 * KiB);
    for (let i = 0; i < 3; i++) ch.write('stdout', chunk);
    assert.equal(src.paused, false, 'less than a ring: free');
    ch.write('stdout', chunk);
    assert.equal(src.paused, true, 'a ring of output nobody reads: paused');
    await sleep(UNREAD_TICK_MS * 3);
    assert.equal(src.paused, false, 'a tick later: a slice may pass');
    ch.write('stdout', Buffer.alloc(UNREAD_SLICE));
    assert.equal(src.paused, true, 'the slice is used up');
    // The ring keeps the newest bytes.
    assert.equal(ch.stats().outputBytes, 256 * KiB + UNREAD_SLICE);
    const sub = ch.attach(reader());
    sub.pump();
    assert.equal(src.paused, false, 'a reader attached: no pacing');
    for (let i = 0; i < 8; i++) ch.write('stdout', chunk);
    assert.equal(src.paused, false, 'read as it comes');
    sub.detach();
    for (let i = 0; i < 4; i++) ch.write('stdout', chunk);
    assert.equal(src.paused, true, 'detached: a fresh ring, then paused again');
    ch.finish({ exitCode: 0, signal: null });
    assert.equal(src.paused, false, 'finished: the pipes drain');
  });

  test('a buffered capture is never paced, and its bytes are handed over once after the exit', () => {
    const ch = new ProcessChannel('2', ['yes'], { captureLimit: 100 * KiB, replayLimit: 64 * KiB });
    const src = source();
    ch.setSource(src);
    for (let i = 0; i < 20; i++) ch.write('stdout', Buffer.alloc(16 * KiB, i));
    assert.equal(src.pauses, 0);
    assert.equal(ch.truncated, true);
    assert.equal(ch.output('stdout').length, 100 * KiB, 'before the exit: a look, not a handover');
    ch.finish({ exitCode: 0, signal: null });
    const out = ch.output('stdout');
    assert.equal(out.length, 100 * KiB);
    assert.equal(out[100 * KiB - 1], 6, 'bytes in order');
    assert.equal(ch.output('stdout').length, 0, 'released after the handover');
  });
});
