// Load: 200 busybox sandboxes created and destroyed in waves of 50 concurrent, while streaming
// execs run in them (WebSocket: to completion, with stdin, and cut short by the destroy) and
// buffered ones too; then a leak check that asserts EXACT zero for every host object by the ids
// used (runc containers, mounts, netns, veths, cgroups, sandbox dirs: findLeftovers), addresses
// (the jail backend's pool), actors (gateway list, shards' children, process table), and open file
// descriptors (back to the baseline, within a small constant) and heap (after a forced GC, within
// a generous bound). Needs root (real runc sandboxes). One in-process gateway, loopback only.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { AnyActorRef } from 'xstate';
import { findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { openFds, sleep, startJailApp, type JailApp } from '../helpers/jail-app.ts';
import { ExecWsClient } from '../helpers/ws-exec-client.ts';

const root = process.getuid?.() === 0;
const skip = root ? false : 'needs root (runc sandboxes)';
const WAVES = 4;
const WAVE_SIZE = 50;
/** File descriptors may differ from the baseline by this much after settling (see the leak test). */
const FD_SLACK = 5;
/** Heap growth allowed after a forced GC (V8 keeps compiled code, inline caches, pino buffers...). */
const HEAP_SLACK_MB = 48;

// The exact output of the streaming command: 200 numbered lines, a pause, 100,000 NUL bytes.
const LINES = 200;
const ZEROS = 100_000;
const STREAM_CMD = `i=0; while [ $i -lt ${LINES} ]; do echo "line $i"; i=$((i+1)); done; sleep 0.3; head -c ${ZEROS} /dev/zero; echo bye >&2`;
const STREAM_BYTES = Array.from({ length: LINES }, (_, i) => `line ${i}\n`.length).reduce((a, b) => a + b, 0) + ZEROS;

/** A GC we can call: --expose-gc if node was started with it, else switched on at runtime. */
function gcFn(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function heapAfterGc(gc: () => void): number {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}

describe('load: 200 sandboxes in waves of 50 with streaming execs, then an exact leak check', { skip, timeout: 230_000 }, () => {
  let g: JailApp;
  const ids: string[] = [];
  const waveMs: number[] = [];
  let fds0 = 0;
  let heap0 = 0;
  const gc = gcFn();
  const kinds = { streamed: 0, killedMidStream: 0, stdin: 0, buffered: 0, plain: 0 };
  const failures: string[] = [];

  async function create(): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      const r = await g.api('POST', '/sandboxes', { templateID: 'busybox', timeout: 600 });
      if (r.status === 201) {
        ids.push(r.body.sandboxID);
        return r.body.sandboxID;
      }
      // Admission control may push back (429 + Retry-After); anything else is a failure.
      if (r.status !== 429 || attempt > 20) throw new Error(`create: ${r.status} ${JSON.stringify(r.body)}`);
      await sleep(1000 * Number(r.headers.get('retry-after') ?? 1));
    }
  }

  async function destroy(id: string): Promise<void> {
    const r = await g.api('DELETE', `/sandboxes/${id}`);
    if (r.status !== 204) throw new Error(`destroy ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  }

  /** One sandbox's life: create, one kind of exec (by index), destroy. */
  async function life(i: number): Promise<void> {
    const id = await create();
    switch (i % 5) {
      case 0: {
        // Streaming to completion: exact bytes, exit 0, then the server closes with 1000.
        const c = new ExecWsClient(g.url, id, g.key, { keep: false });
        await c.start({ type: 'start', cmd: STREAM_CMD });
        const exit = await c.exited;
        assert.equal(exit.exitCode, 0, JSON.stringify(exit));
        assert.equal(c.outBytes, STREAM_BYTES);
        assert.equal(c.errBytes, 4);
        assert.equal((await c.closed).code, 1000);
        kinds.streamed++;
        break;
      }
      case 1: {
        // Still streaming when its sandbox is destroyed: the exit says so, the socket is closed.
        const c = new ExecWsClient(g.url, id, g.key, { keep: false });
        await c.start({ type: 'start', cmd: 'while :; do echo tick; sleep 0.05; done' });
        for (let t = 0; c.outBytes === 0 && t < 200; t++) await sleep(25);
        assert.ok(c.outBytes > 0, 'output flowed before the destroy');
        await destroy(id);
        const exit = await c.exited;
        assert.equal(exit.reason, 'killed', JSON.stringify(exit));
        assert.equal((await c.closed).code, 1000);
        kinds.killedMidStream++;
        return;
      }
      case 2: {
        // Stdin streamed in, echoed back by cat byte for byte.
        const input = randomBytes(64 * 1024);
        const c = new ExecWsClient(g.url, id, g.key);
        await c.start({ type: 'start', argv: ['cat'], stdin: true });
        c.send(input.subarray(0, 30_000));
        c.send({ type: 'stdin', data: input.subarray(30_000).toString('base64') });
        c.send({ type: 'close_stdin' });
        const exit = await c.exited;
        assert.equal(exit.exitCode, 0);
        assert.ok(c.stdout().equals(input), 'cat echoed stdin exactly');
        kinds.stdin++;
        break;
      }
      case 3: {
        const r = await g.api('POST', `/sandboxes/${id}/exec`, { cmd: `echo ${id}` });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.stdout, `${id}\n`);
        kinds.buffered++;
        break;
      }
      default:
        kinds.plain++;
    }
    await destroy(id);
  }

  before(async () => {
    g = await startJailApp();
    // Warm up every code path once (lazy imports, JIT, runc's first exec, the WebSocket server),
    // then take the baselines.
    await life(0);
    await life(2);
    ids.length = 0;
    for (const k of Object.keys(kinds) as (keyof typeof kinds)[]) kinds[k] = 0;
    g.dropIdleConnections();
    await sleep(500);
    fds0 = openFds();
    heap0 = heapAfterGc(gc);
  });

  after(async () => {
    for (const id of ids) await g?.api('DELETE', `/sandboxes/${id}`).catch(() => undefined);
    await g?.close();
  });

  test(`${WAVES * WAVE_SIZE} sandboxes in ${WAVES} waves of ${WAVE_SIZE} concurrent, with streaming execs`, async () => {
    const t0 = performance.now();
    for (let w = 0; w < WAVES; w++) {
      const tw = performance.now();
      const results = await Promise.allSettled(Array.from({ length: WAVE_SIZE }, (_, i) => life(i)));
      for (const r of results) if (r.status === 'rejected') failures.push(String((r.reason as Error)?.message ?? r.reason));
      waveMs.push(Math.round(performance.now() - tw));
      assert.equal(g.app.gateway.lifecycle, 'serving');
    }
    const total = Math.round(performance.now() - t0);
    console.log(`load: ${ids.length} sandboxes, waves ${waveMs.join(' / ')} ms, total ${total} ms; execs ${JSON.stringify(kinds)}`);
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} sandbox lives failed`);
    assert.equal(ids.length, WAVES * WAVE_SIZE);
    assert.equal(new Set(ids).size, ids.length, 'every id distinct');
  });

  test('leak check: exact zero containers, mounts, netns, veths, cgroups, dirs, addresses, actors; fds and heap back', async () => {
    const gw = g.app.gateway;
    // Actors: nothing listed, no sandbox actor in the system, every shard empty.
    assert.deepEqual((await g.api('GET', '/sandboxes')).body, []);
    for (const id of ids) assert.equal(gw.actor.system.get(`sandbox:${id}`), undefined, `actor sandbox:${id}`);
    const shards = (gw.actor.getSnapshot().context as { shards: AnyActorRef[] }).shards;
    const shardChildren = shards.map((s) => Object.keys(s.getSnapshot().children).length);
    const shardLive = shards.map((s) => (s.getSnapshot().context as { live: number }).live);
    assert.deepEqual(shardChildren, shards.map(() => 0), 'shards have no children');
    assert.deepEqual(shardLive, shards.map(() => 0), 'shards count no live sandboxes');
    // Process table: entries of gone sandboxes go at the next sweep; run it now. (The table's map is
    // private; read for this check only.)
    gw.processes.sweep();
    assert.deepEqual(gw.processes.retained(), { running: 0, finished: 0 });
    assert.equal((gw.processes as unknown as { bySandbox: Map<string, unknown> }).bySandbox.size, 0, 'process table empty');

    // Addresses: every one back in the pool.
    assert.equal(g.backend.pool.inUse, 0, 'addresses in use');

    // Host objects, looked up on the host by every id used.
    const t = performance.now();
    assert.deepEqual(await findLeftovers(ids, { stateDir: g.stateDir }), []);
    const leftoverMs = Math.round(performance.now() - t);

    // File descriptors: back to the baseline once this client's idle keep-alive sockets (and the
    // server's ends of them) are closed. The slack covers what may legitimately come and go around
    // a measurement (a socket in its close handshake, a child's pipe not yet reaped), never
    // per-sandbox objects: 200 sandboxes leaking one fd each would be 200.
    g.dropIdleConnections();
    await sleep(200);
    let fds = openFds();
    for (let i = 0; i < 60 && Math.abs(fds - fds0) > FD_SLACK; i++) {
      await sleep(250);
      fds = openFds();
    }
    if (process.env.COPPICE_LOAD_FDS) {
      const { readlinkSync, readdirSync } = await import('node:fs');
      const byKind = new Map<string, number>();
      for (const f of readdirSync('/proc/self/fd')) {
        let t = '?';
        try { t = readlinkSync(`/proc/self/fd/${f}`).replace(/\d+/g, 'N'); } catch { /* closed */ }
        byKind.set(t, (byKind.get(t) ?? 0) + 1);
      }
      console.log('fds by kind', JSON.stringify([...byKind]));
      const { execFileSync } = await import('node:child_process');
      console.log(execFileSync('ss', ['-tanp']).toString().split('\n').filter((l) => l.includes(`pid=${process.pid},`)).slice(0, 15).join('\n'));
    }
    // Heap: after a forced GC, growth must stay far below what 200 sandboxes' state would be.
    const heap = heapAfterGc(gc);
    const growthMb = (heap - heap0) / 1024 / 1024;
    console.log(`load leak check: fds ${fds0} -> ${fds}; heap ${(heap0 / 1048576).toFixed(1)} -> ${(heap / 1048576).toFixed(1)} MiB (${growthMb >= 0 ? '+' : ''}${growthMb.toFixed(1)}); findLeftovers over ${ids.length} ids in ${leftoverMs} ms`);
    assert.ok(Math.abs(fds - fds0) <= FD_SLACK, `open fds ${fds0} -> ${fds}`);
    assert.ok(growthMb < HEAP_SLACK_MB, `heap grew ${growthMb.toFixed(1)} MiB`);
  });
});
