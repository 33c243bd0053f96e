// Cold create -> first exec, per template: through the gateway's REST (POST /sandboxes, then
// POST /sandboxes/:id/exec `true`) against the raw runc sequence (lib/raw-runc.ts: mount, netns +
// veth with `ip -batch`, config.json from the driver's own builder, runc create/start, runc exec
// true). Samples alternate gateway/raw so both see the same machine load. Teardown is not timed.
import { join } from 'node:path';
import { startBenchGateway } from '../lib/gateway.ts';
import { expect } from '../lib/http.ts';
import { log, newId } from '../lib/host.ts';
import { startRaw } from '../lib/raw-setup.ts';
import type { RawTimings } from '../lib/raw-runc.ts';
import { median, p95 } from '../lib/stats.ts';
import type { BenchSettings, Row } from '../lib/types.ts';

export async function run(s: BenchSettings, notes: string[]): Promise<Row[]> {
  const N = s.quick ? 3 : 10;
  const gw = await startBenchGateway({ templatesRoot: s.templatesRoot });
  const { raw, close: closeRaw } = await startRaw();
  const rows: Row[] = [];
  const used: string[] = [];
  try {
    for (const template of ['base', 'busybox']) {
      const templatePath = join(s.templatesRoot, `${template}-template`);
      const g = { total: [] as number[], create: [] as number[], exec: [] as number[], destroy: [] as number[] };
      const r: RawTimings[] = [];
      const rawDestroy: number[] = [];
      const once = async (record: boolean) => {
        const t0 = performance.now();
        const sbx = expect(await gw.api('POST', '/sandboxes', { templateID: template }), [201], `create ${template}`) as { sandboxID: string };
        const t1 = performance.now();
        const ex = expect(await gw.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { argv: ['true'] }), [200], 'exec') as { exitCode: number };
        const t2 = performance.now();
        if (ex.exitCode !== 0) throw new Error(`exec true exited ${ex.exitCode}`);
        used.push(sbx.sandboxID);
        expect(await gw.api('DELETE', `/sandboxes/${sbx.sandboxID}`), [204], 'delete');
        const t3 = performance.now();
        const id = newId();
        const rt = await raw.create(id, templatePath, { exec: true });
        const t4 = performance.now();
        const left = await raw.destroy(id);
        if (left.length) notes.push(`raw ${id}: ${left.join(', ')}`);
        if (!record) return;
        g.total.push(t2 - t0);
        g.create.push(t1 - t0);
        g.exec.push(t2 - t1);
        g.destroy.push(t3 - t2);
        r.push(rt);
        rawDestroy.push(performance.now() - t4);
      };
      log(`create -> first exec on ${template}: 1 warm-up + ${N} (gateway and raw alternating)`);
      await once(false);
      for (let i = 0; i < N; i++) await once(true);
      const rawTotal = r.map((x) => x.total);
      const rawUpToStart = r.map((x) => x.total - (x.exec ?? 0));
      const steps = Object.fromEntries(
        (['dirs', 'overlay', 'netHost', 'netInside', 'config', 'runcCreate', 'runcStart', 'exec'] as const).map((k) => [k, median(r.map((x) => x[k] ?? 0))]),
      );
      rows.push({
        id: `create-exec-${template}`,
        name: `create -> first exec, cold, ${template} (REST)`,
        unit: 'ms',
        n: N,
        median: median(g.total),
        p95: p95(g.total),
        raw: median(rawTotal),
        rawName: 'raw runc sequence through `runc exec true`',
        extra: {
          gateway: { createMs: median(g.create), execMs: median(g.exec), destroyMs: median(g.destroy), samples: g.total },
          raw: { upToStartMs: median(rawUpToStart), steps, destroyMs: median(rawDestroy), samples: rawTotal },
          createOverheadMs: median(g.create) - median(rawUpToStart),
        },
        note:
          `${template}: REST create ${median(g.create).toFixed(0)} ms + exec ${median(g.exec).toFixed(0)} ms; ` +
          `raw steps (median ms): ${Object.entries(steps).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}; ` +
          `destroy: REST ${median(g.destroy).toFixed(0)} ms, raw ${median(rawDestroy).toFixed(0)} ms.`,
      });
    }
    await gw.close();
    const left = await gw.leftovers(used);
    if (left.length) notes.push(`gateway sandboxes left behind: ${left.join(', ')}`);
  } finally {
    await gw.close();
    const left = await closeRaw();
    if (left.length) notes.push(`raw leftovers: ${left.join(', ')}`);
  }
  return rows;
}
