// Heap and spawn time of idle sandbox actors: a Gateway (the actor tree, no edge) on the no-op
// backend, N sandboxes created through Gateway.create by 32 concurrent callers (the default create
// concurrency of its admission control), heap measured after global.gc(). Also the time to
// destroy them all at once. Whatever the gateway does per create (admission, live-count checks,
// the expiry reaper, lifecycle logging) is in these numbers as it stands: measured, not hidden.
import { Gateway } from '../../src/actors/gateway.ts';
import { NoopBackend } from '../../src/backends/noop.ts';
import { createLogger } from '../../src/log.ts';
import { log, sleep } from '../lib/host.ts';
import { median, p95 } from '../lib/stats.ts';
import type { BenchSettings, Row } from '../lib/types.ts';

const gc = (globalThis as { gc?: () => void }).gc;

function heapAfterGc(): number {
  for (let i = 0; i < 3; i++) gc!();
  return process.memoryUsage().heapUsed;
}

interface Sample {
  spawnMs: number;
  heapBytes: number;
  destroyMs: number;
  destroyed: boolean;
  refused: number;
  /** Fewer than asked when the spawn cap was hit. */
  spawned: number;
}

const CALLERS = 32;
/** Stop issuing creates after this long (the run has a time budget); the row then says so. */
const SPAWN_CAP_MS = 100_000;

async function sample(n: number, templatesRoot: string, destroyDeadlineMs: number): Promise<Sample> {
  const gw = new Gateway({ backends: { jail: new NoopBackend() }, roots: { templatesRoot }, logger: createLogger('silent') });
  gw.start();
  while (gw.lifecycle === 'starting') await sleep(5);
  const template = gw.templates()[0]?.name;
  if (!template) throw new Error(`no template under ${templatesRoot}`);
  const h0 = heapAfterGc();
  const t0 = performance.now();
  // 32 callers at a time (the gateway's default create concurrency): all-at-once would only
  // measure admission control's 429s. A 429 anyway is retried after a tick and counted.
  const views: { sandboxID: string }[] = [];
  let next = 0;
  let refused = 0;
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      while (next < n && performance.now() - t0 < SPAWN_CAP_MS) {
        next++;
        for (;;) {
          try {
            views.push(await gw.create({ templateID: template }));
            break;
          } catch (err) {
            if ((err as { code?: string }).code !== 'too_many_requests') throw err;
            refused++;
            await sleep(1);
          }
        }
      }
    }),
  );
  const spawnMs = performance.now() - t0;
  const h1 = heapAfterGc();
  const spawned = views.length;
  if (gw.list().length !== spawned) throw new Error(`expected ${spawned} live sandboxes, gateway lists ${gw.list().length}`);
  const t1 = performance.now();
  const all = Promise.all(views.map((v) => gw.destroy(v.sandboxID)));
  const destroyed = await Promise.race([all.then(() => true), sleep(destroyDeadlineMs).then(() => false)]);
  const destroyMs = performance.now() - t1;
  gw.sigint();
  await Promise.race([gw.stopped, sleep(destroyDeadlineMs)]);
  return { spawnMs, heapBytes: h1 - h0, destroyMs, destroyed, refused, spawned };
}

export async function run(s: BenchSettings, notes: string[]): Promise<Row[]> {
  if (!gc) throw new Error('run with node --expose-gc (bench/run.ts does)');
  const rows: Row[] = [];
  const plan: [number, number][] = s.quick ? [[1000, 2], [10_000, 1]] : [[1000, 5], [10_000, 3]];
  // Warm the code paths once so the first sample does not pay for JIT and module loading.
  await sample(200, s.templatesRoot, 30_000);
  for (const [n, reps] of plan) {
    const xs: Sample[] = [];
    for (let r = 0; r < reps; r++) {
      log(`actors: ${n} sandboxes, run ${r + 1}/${reps}`);
      const x = await sample(n, s.templatesRoot, 120_000);
      xs.push(x);
      // Keep the run inside its budget: a slow sample is reported as measured, not repeated.
      if (x.spawnMs + x.destroyMs > 15_000 && r + 1 < reps) {
        notes.push(`${n} actors took ${((x.spawnMs + x.destroyMs) / 1000).toFixed(1)} s to spawn and destroy: measured ${r + 1} time(s), not ${reps}`);
        break;
      }
    }
    const capped = xs.filter((x) => x.spawned < n);
    if (capped.length) {
      notes.push(`spawning ${n} actors hit the ${SPAWN_CAP_MS / 1000} s cap: ${capped.map((x) => x.spawned).join(', ')} spawned; heap per actor is over those`);
    }
    const spawn = xs.map((x) => x.spawnMs);
    const heapKB = xs.map((x) => x.heapBytes / x.spawned / 1024);
    // Total heap scaled to n when the cap cut the spawn short (per-actor cost times n).
    const totalMB = xs.map((x) => (x.heapBytes / x.spawned) * n / 1e6);
    const destroy = xs.map((x) => x.destroyMs);
    const refused = xs.reduce((a, x) => a + x.refused, 0);
    if (refused) notes.push(`${refused} create(s) of ${n * xs.length} were refused with 429 and retried`);
    if (xs.some((x) => !x.destroyed)) notes.push(`destroying ${n} actors did not finish within 120 s`);
    const label = n.toLocaleString('en-US');
    const big = n === 10_000;
    rows.push(
      {
        id: `actors-spawn-${n}`,
        name: `spawn ${label} sandbox actors (Gateway.create x${CALLERS} callers, no-op backend)`,
        unit: 'ms',
        n: xs.length,
        median: median(spawn),
        p95: p95(spawn),
        raw: null,
        ...(big ? { goal: { text: '<= 2 s', met: median(spawn) <= 2000 && capped.length === 0 } } : {}),
        extra: { samples: spawn, spawned: xs.map((x) => x.spawned) },
        ...(capped.length ? { note: `stopped at the ${SPAWN_CAP_MS / 1000} s cap with ${capped[0]!.spawned} of ${n} spawned: the real figure is higher` } : {}),
      },
      {
        id: `actors-heap-${n}`,
        name: `heap of ${label} idle sandbox actors`,
        unit: 'MB',
        n: xs.length,
        median: median(totalMB),
        p95: p95(totalMB),
        raw: null,
        ...(big ? { goal: { text: '<= 100 MB', met: median(totalMB) <= 100 } } : {}),
        extra: { perActorKB: heapKB },
      },
      { id: `actors-heap-per-${n}`, name: `heap per idle sandbox actor, at ${label}`, unit: 'KB', n: xs.length, median: median(heapKB), p95: p95(heapKB), raw: null },
      {
        id: `actors-destroy-${n}`,
        name: `destroy ${label} sandbox actors at once`,
        unit: 'ms',
        n: xs.length,
        median: median(destroy),
        p95: p95(destroy),
        raw: null,
        extra: { samples: destroy },
      },
    );
  }
  return rows;
}
