// Scaling: one create alone against 20 at once, through REST (POST /sandboxes; ready = 201) and
// for the raw runc sequence up to `runc start`. The ratio is the wall time of 20 concurrent
// creates (the last one to answer) over the median single create. E2B's self-hosted stack is
// reported at ~150 ms alone and ~1.6 s at 20 (~11x).
import { join } from 'node:path';
import { startBenchGateway } from '../lib/gateway.ts';
import { expect } from '../lib/http.ts';
import { log, newId } from '../lib/host.ts';
import { startRaw } from '../lib/raw-setup.ts';
import { median, p95 } from '../lib/stats.ts';
import type { BenchSettings, Row } from '../lib/types.ts';

const WIDTH = 20;

export async function run(s: BenchSettings, notes: string[]): Promise<Row[]> {
  const SINGLE = s.quick ? 3 : 8;
  const ROUNDS = s.quick ? 1 : 3;
  const template = 'base';
  const templatePath = join(s.templatesRoot, `${template}-template`);
  const gw = await startBenchGateway({ templatesRoot: s.templatesRoot });
  const { raw, close: closeRaw } = await startRaw();
  const used: string[] = [];
  try {
    const gwCreate = async () => {
      const t0 = performance.now();
      const sbx = expect(await gw.api('POST', '/sandboxes', { templateID: template }), [201], 'create') as { sandboxID: string };
      used.push(sbx.sandboxID);
      return { id: sbx.sandboxID, ms: performance.now() - t0 };
    };
    const gwDelete = async (id: string) => expect(await gw.api('DELETE', `/sandboxes/${id}`), [204], 'delete');
    const rawCreate = async () => {
      const id = newId();
      const t0 = performance.now();
      await raw.create(id, templatePath);
      return { id, ms: performance.now() - t0 };
    };
    const rawDelete = async (id: string) => {
      const left = await raw.destroy(id);
      if (left.length) notes.push(`raw ${id}: ${left.join(', ')}`);
    };

    log(`concurrency: 1 warm-up + ${SINGLE} single creates each`);
    await gwDelete((await gwCreate()).id);
    await rawDelete((await rawCreate()).id);
    const single = { gw: [] as number[], raw: [] as number[] };
    for (let i = 0; i < SINGLE; i++) {
      const a = await gwCreate();
      single.gw.push(a.ms);
      await gwDelete(a.id);
      const b = await rawCreate();
      single.raw.push(b.ms);
      await rawDelete(b.id);
    }

    const wall = { gw: [] as number[], raw: [] as number[] };
    const each = { gw: [] as number[], raw: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      log(`concurrency: ${WIDTH} at once, round ${r + 1}/${ROUNDS}`);
      let t0 = performance.now();
      const a = await Promise.all(Array.from({ length: WIDTH }, gwCreate));
      wall.gw.push(performance.now() - t0);
      each.gw.push(...a.map((x) => x.ms));
      await Promise.all(a.map((x) => gwDelete(x.id)));
      t0 = performance.now();
      const b = await Promise.all(Array.from({ length: WIDTH }, rawCreate));
      wall.raw.push(performance.now() - t0);
      each.raw.push(...b.map((x) => x.ms));
      await Promise.all(b.map((x) => rawDelete(x.id)));
    }
    await gw.close();
    const left = await gw.leftovers(used);
    if (left.length) notes.push(`gateway sandboxes left behind: ${left.join(', ')}`);

    const scale = median(wall.gw) / median(single.gw);
    const rawScale = median(wall.raw) / median(single.raw);
    return [
      {
        id: 'create-single',
        name: `create -> ready, 1 alone, cold, ${template} (REST)`,
        unit: 'ms',
        n: SINGLE,
        median: median(single.gw),
        p95: p95(single.gw),
        raw: median(single.raw),
        rawName: 'raw runc sequence up to `runc start`',
        extra: { gateway: single.gw, raw: single.raw },
      },
      {
        id: 'create-20-wall',
        name: `${WIDTH} concurrent creates, wall until the last is ready (REST)`,
        unit: 'ms',
        n: ROUNDS,
        median: median(wall.gw),
        p95: p95(wall.gw),
        raw: median(wall.raw),
        rawName: `${WIDTH} raw sequences at once`,
        extra: { perRequestMedianMs: median(each.gw), perRequestP95Ms: p95(each.gw), rawPerSequenceMedianMs: median(each.raw), gateway: wall.gw, raw: wall.raw },
        note: `${WIDTH} at once: each REST create took ${median(each.gw).toFixed(0)} ms median (p95 ${p95(each.gw).toFixed(0)}); each raw sequence ${median(each.raw).toFixed(0)} ms median.`,
      },
      {
        id: 'create-20-scaling',
        name: `scaling: ${WIDTH} concurrent / 1 create (wall)`,
        unit: 'x',
        n: null,
        median: scale,
        p95: null,
        raw: rawScale,
        rawName: 'the same ratio for the raw sequence',
        goal: { text: '<= 3x', met: scale <= 3 },
      },
    ];
  } finally {
    await gw.close();
    const left = await closeRaw();
    if (left.length) notes.push(`raw leftovers: ${left.join(', ')}`);
  }
}
