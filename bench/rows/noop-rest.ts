// The gateway's own cost, with no substrate: REST create/delete and exec against a gateway on the
// no-op backend (src/backends/noop.ts) running in its own process, compared with a bare node:http
// server on the same loopback (the floor for one HTTP round trip in node on this machine).
import { join } from 'node:path';
import { apiClient, expect, type Api } from '../lib/http.ts';
import { log } from '../lib/host.ts';
import { startHelper } from '../lib/spawn-child.ts';
import { median, p95 } from '../lib/stats.ts';
import type { BenchSettings, Row } from '../lib/types.ts';

const TEMPLATE = 'base'; // any template the registry lists: the no-op backend never looks at it

async function timed<T>(xs: number[], f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await f();
  xs.push(performance.now() - t0);
  return r;
}

/** `workers` loops running `op` until `ms` elapse; returns completed ops per second. */
async function rate(workers: number, ms: number, op: (w: number) => Promise<void>): Promise<number> {
  let done = 0;
  const end = performance.now() + ms;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (performance.now() < end) {
        await op(w);
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

export async function run(s: BenchSettings, notes: string[]): Promise<Row[]> {
  const N = s.quick ? 100 : 500;
  const WARM = s.quick ? 50 : 200;
  const WINDOW_MS = s.quick ? 500 : 1500;
  const ROUNDS = 3;
  const WORKERS = 16;
  const server = await startHelper(['--import', 'tsx', join(import.meta.dirname, '../lib/noop-server.ts'), s.templatesRoot], 'no-op gateway');
  const [gwUrl, bareUrl, key] = server.ready as [string, string, string];
  const gw = apiClient(gwUrl, key);
  const bare = apiClient(bareUrl, key);
  try {
    const create = async (api: Api) => expect(await api('POST', '/sandboxes', { templateID: TEMPLATE }), [201], 'create').sandboxID as string;
    const del = async (api: Api, id: string) => expect(await api('DELETE', `/sandboxes/${id}`), [204], 'delete');
    const exec = async (api: Api, id: string) => {
      const r = expect(await api('POST', `/sandboxes/${id}/exec`, { argv: ['true'] }), [200], 'exec');
      if (r.exitCode !== 0) throw new Error(`exec: ${JSON.stringify(r)}`);
    };

    log(`no-op gateway: ${WARM} warm-up + ${N} sequential create/delete`);
    for (let i = 0; i < WARM; i++) await del(gw.api, await create(gw.api));
    for (let i = 0; i < WARM; i++) await del(bare.api, await create(bare.api));
    const c = { gw: [] as number[], bare: [] as number[] };
    const d = { gw: [] as number[], bare: [] as number[] };
    for (let i = 0; i < N; i++) {
      const id = await timed(c.gw, () => create(gw.api));
      await timed(d.gw, () => del(gw.api, id));
      const b = await timed(c.bare, () => create(bare.api));
      await timed(d.bare, () => del(bare.api, b));
    }

    log(`no-op gateway: create+delete rate, ${WORKERS} clients, ${ROUNDS} x ${WINDOW_MS} ms`);
    const pairs = { gw: [] as number[], bare: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      pairs.gw.push(await rate(WORKERS, WINDOW_MS, async () => del(gw.api, await create(gw.api))));
      pairs.bare.push(await rate(WORKERS, WINDOW_MS, async () => del(bare.api, await create(bare.api))));
    }

    log(`no-op gateway: exec latency and rate`);
    const ids: string[] = [];
    for (let i = 0; i < WORKERS; i++) ids.push(await create(gw.api));
    for (let i = 0; i < WARM; i++) await exec(gw.api, ids[0]!);
    const e = { gw: [] as number[], bare: [] as number[] };
    for (let i = 0; i < N; i++) {
      await timed(e.gw, () => exec(gw.api, ids[0]!));
      await timed(e.bare, () => create(bare.api));
    }
    const execs = { gw: [] as number[], bare: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      execs.gw.push(await rate(WORKERS, WINDOW_MS, (w) => exec(gw.api, ids[w]!)));
      execs.bare.push(await rate(WORKERS, WINDOW_MS, async () => void (await create(bare.api))));
    }
    for (const id of ids) await del(gw.api, id);
    const left = expect(await gw.api('GET', '/sandboxes'), [200], 'list') as unknown[];
    if (left.length) notes.push(`no-op gateway still lists ${left.length} sandboxes after the bench`);

    const bareName = 'bare node:http round trip, same loopback';
    return [
      {
        id: 'noop-create',
        name: 'gateway overhead: REST create (no-op backend)',
        unit: 'ms',
        n: N,
        median: median(c.gw),
        p95: p95(c.gw),
        raw: median(c.bare),
        rawName: bareName,
        goal: { text: '<= 2 ms', met: median(c.gw) <= 2 },
      },
      { id: 'noop-delete', name: 'gateway overhead: REST delete (no-op backend)', unit: 'ms', n: N, median: median(d.gw), p95: p95(d.gw), raw: median(d.bare), rawName: bareName },
      {
        id: 'noop-create-delete-rate',
        name: `REST create+delete pairs/s, ${WORKERS} clients (no-op backend)`,
        unit: 'ops/s',
        n: ROUNDS,
        median: median(pairs.gw),
        p95: null,
        raw: median(pairs.bare),
        rawName: 'bare node:http, 2 requests per pair',
        extra: { gateway: pairs.gw, bare: pairs.bare },
      },
      { id: 'noop-exec', name: 'REST exec round trip (no-op backend)', unit: 'ms', n: N, median: median(e.gw), p95: p95(e.gw), raw: median(e.bare), rawName: bareName },
      {
        id: 'noop-exec-rate',
        name: `REST exec/s, ${WORKERS} clients on ${WORKERS} sandboxes (no-op backend)`,
        unit: 'ops/s',
        n: ROUNDS,
        median: median(execs.gw),
        p95: null,
        raw: median(execs.bare),
        rawName: 'bare node:http requests/s',
        extra: { gateway: execs.gw, bare: execs.bare },
      },
    ];
  } finally {
    gw.close();
    bare.close();
    await server.stop();
  }
}
