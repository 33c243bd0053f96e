// create -> ready on a jail pool hit (a pre-created, frozen sandbox handed out: thaw + bookkeeping).
// Jail pools are being built while this suite is: if this gateway has no `--jail-pool-size` flag
// the row says "n/a (no jail pools yet)"; once it does, the row is measured, with no change here.
import { ConfigError, parseServeArgs } from '../../src/config.ts';
import { startBenchGateway } from '../lib/gateway.ts';
import { expect } from '../lib/http.ts';
import { log, sleep } from '../lib/host.ts';
import { median, p95 } from '../lib/stats.ts';
import type { BenchSettings, Row } from '../lib/types.ts';

const NAME = 'create -> ready, jail pool hit (REST)';
const GOAL = '<= 30 ms';
const TEMPLATE = 'base';

const na = (note: string): Row[] => [{ id: 'pool-hit-jail', name: NAME, unit: 'ms', n: null, median: null, p95: null, raw: null, goal: { text: GOAL, met: null }, note }];

export async function run(s: BenchSettings, notes: string[]): Promise<Row[]> {
  const N = s.quick ? 3 : 10;
  const SIZE = 2;
  const flags = ['--jail-pool-size', String(SIZE), '--jail-pool-templates', TEMPLATE];
  try {
    parseServeArgs(flags);
  } catch (err) {
    if (err instanceof ConfigError) return na('n/a (no jail pools yet)');
    throw err;
  }
  const gw = await startBenchGateway({ templatesRoot: s.templatesRoot, args: flags });
  try {
    type PoolView = { template: string; backend: string; available: number };
    const available = async () => {
      const pools = expect(await gw.api('GET', '/pool'), [200], 'pool') as PoolView[];
      return pools.find((p) => p.template === TEMPLATE && p.backend === 'jail')?.available ?? 0;
    };
    const waitStock = async () => {
      for (let i = 0; i < 600; i++) {
        if ((await available()) >= 1) return true;
        await sleep(50);
      }
      return false;
    };
    log(`jail pool: ${N} pool hits on ${TEMPLATE} (pool size ${SIZE}, refilled between hits)`);
    const hits: number[] = [];
    const firstExec: number[] = [];
    const misses: number[] = [];
    const execFailures: string[] = [];
    for (let i = 0; i < N + 1; i++) {
      const stocked = await waitStock();
      const t0 = performance.now();
      const sbx = expect(await gw.api('POST', '/sandboxes', { templateID: TEMPLATE }), [201], 'create') as { sandboxID: string };
      const t1 = performance.now();
      const ex = expect(await gw.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { argv: ['true'] }), [200], 'exec') as { exitCode: number };
      const t2 = performance.now();
      // Measured, not asserted: a failing first exec is reported, the create time still counts.
      if (ex.exitCode !== 0) execFailures.push(`exit ${ex.exitCode}${(ex as { stderr?: string }).stderr ? `: ${String((ex as { stderr?: string }).stderr).trim().slice(0, 200)}` : ''}`);
      expect(await gw.api('DELETE', `/sandboxes/${sbx.sandboxID}`), [204], 'delete');
      if (i === 0) continue; // warm-up
      (stocked ? hits : misses).push(t1 - t0);
      if (stocked) firstExec.push(t2 - t1);
    }
    if (execFailures.length) notes.push(`first exec after a pool hit failed ${execFailures.length} of ${N + 1} times: ${[...new Set(execFailures)].join('; ')}`);
    if (misses.length) notes.push(`${misses.length} create(s) found the pool empty after 30 s of waiting`);
    await gw.close();
    if (hits.length === 0) return na('skipped: the pool never had a sandbox ready');
    return [
      {
        id: 'pool-hit-jail',
        name: NAME,
        unit: 'ms',
        n: hits.length,
        median: median(hits),
        p95: p95(hits),
        raw: null,
        goal: { text: GOAL, met: median(hits) <= 30 },
        extra: { samples: hits, firstExecMs: firstExec },
        note: `first exec after a pool hit: ${median(firstExec).toFixed(1)} ms median.`,
      },
    ];
  } finally {
    await gw.close();
  }
}
