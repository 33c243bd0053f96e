// Pause + resume round trip on one live jail sandbox: REST POST /pause then POST /resume, against
// writing the container's v1 freezer.state directly (FROZEN, wait until it reads FROZEN, THAWED).
import { readFile, writeFile } from 'node:fs/promises';
import { freezerStatePath } from '../../src/backends/jail/linux/names.ts';
import { startBenchGateway } from '../lib/gateway.ts';
import { expect } from '../lib/http.ts';
import { log } from '../lib/host.ts';
import { median, p95 } from '../lib/stats.ts';
import type { BenchSettings, Row } from '../lib/types.ts';

async function rawRoundTrip(path: string): Promise<number> {
  const t0 = performance.now();
  await writeFile(path, 'FROZEN');
  for (let i = 0; (await readFile(path, 'utf8')).trim() !== 'FROZEN'; i++) {
    if (i > 10_000) throw new Error(`${path} never reached FROZEN`);
    await writeFile(path, 'FROZEN');
  }
  await writeFile(path, 'THAWED');
  if ((await readFile(path, 'utf8')).trim() !== 'THAWED') throw new Error(`${path} not THAWED`);
  return performance.now() - t0;
}

export async function run(s: BenchSettings, notes: string[]): Promise<Row[]> {
  const N = s.quick ? 10 : 30;
  const template = 'base';
  const gw = await startBenchGateway({ templatesRoot: s.templatesRoot });
  try {
    const sbx = expect(await gw.api('POST', '/sandboxes', { templateID: template }), [201], 'create') as { sandboxID: string };
    const path = freezerStatePath(sbx.sandboxID);
    const g: number[] = [];
    const r: number[] = [];
    const failures: string[] = [];
    /** One REST round trip; null when the gateway answered with an error (counted, not fatal). */
    const rest = async (): Promise<number | null> => {
      const t0 = performance.now();
      const p = await gw.api('POST', `/sandboxes/${sbx.sandboxID}/pause`);
      if (p.status !== 204) {
        failures.push(`pause: HTTP ${p.status} ${(p.body as { message?: string })?.message ?? ''}`);
        return null;
      }
      const q = await gw.api('POST', `/sandboxes/${sbx.sandboxID}/resume`);
      if (q.status !== 204) {
        failures.push(`resume: HTTP ${q.status} ${(q.body as { message?: string })?.message ?? ''}`);
        return null;
      }
      return performance.now() - t0;
    };
    log(`pause/resume on ${template}: 3 warm-up + ${N} each, alternating`);
    for (let i = 0; i < 3; i++) {
      await rest();
      await rawRoundTrip(path);
    }
    for (let i = 0; i < N; i++) {
      const x = await rest();
      if (x !== null) g.push(x);
      r.push(await rawRoundTrip(path));
    }
    if (failures.length) notes.push(`${failures.length} of ${N + 3} REST pause/resume round trips failed: ${[...new Set(failures)].join('; ')}`);
    // Still usable after all that.
    const ex = expect(await gw.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { argv: ['true'] }), [200], 'exec') as { exitCode: number };
    if (ex.exitCode !== 0) notes.push(`exec after pause/resume exited ${ex.exitCode}`);
    expect(await gw.api('DELETE', `/sandboxes/${sbx.sandboxID}`), [204], 'delete');
    await gw.close();
    const left = await gw.leftovers([sbx.sandboxID]);
    if (left.length) notes.push(`left behind: ${left.join(', ')}`);
    return [
      {
        id: 'pause-resume',
        name: `pause + resume round trip, jail (${template}), REST`,
        unit: 'ms',
        n: g.length,
        median: g.length ? median(g) : null,
        p95: g.length ? p95(g) : null,
        raw: median(r),
        rawName: 'write FROZEN/THAWED to the freezer cgroup directly',
        extra: { gateway: g, raw: r },
      },
    ];
  } finally {
    await gw.close();
  }
}
