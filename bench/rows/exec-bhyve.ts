// Exec round trip on a bhyve-class sandbox: REST POST /sandboxes/:id/exec (the gateway keeps one
// ssh2 connection per guest and opens a channel per exec) against a fresh `ssh` process per exec
// with the seed's options (its v1 cost), to the same guest. The guest comes from the Linux
// pool-ctl (ops/pool-ctl/linux: a netns running the image's real sshd), set up as
// test/integration/bhyve-gateway.test.ts does but with this bench's own state dir, bridge, name
// prefix and a free /24, and torn down by those names afterwards. Also reported: create -> ready
// on a pool hit (pool-ctl checkout + SSH connect).
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawn, execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { platformJailBackend } from '../../src/app.ts';
import { createBhyveBackend } from '../../src/backends/bhyve/backend.ts';
import { onCleanup, poolCtlSweep, record, type ManifestEntry } from '../lib/cleanup.ts';
import { startBenchGateway } from '../lib/gateway.ts';
import { expect } from '../lib/http.ts';
import { freeSubnet, log, range, sh } from '../lib/host.ts';
import { median, p95 } from '../lib/stats.ts';
import type { BenchSettings, Row } from '../lib/types.ts';

const repo = join(import.meta.dirname, '..', '..');
const POOL_CTL = join(repo, 'ops/pool-ctl/linux/coppice-bhyve-pool-ctl.sh');
const BUILD_IMAGE = join(repo, 'ops/bhyve/build-image.sh');
const IMAGES = process.env.COPPICE_BENCH_BHYVE_IMAGES ?? '/var/tmp/coppice-bench-bhyve-images';
const KEY = process.env.COPPICE_POOL_KEY ?? '/root/coppice-signing/pool-key';
const TEMPLATE = 'bench-bhyve';

function skipped(why: string): Row[] {
  return [
    { id: 'exec-bhyve', name: 'exec round trip `true`, bhyve (Linux pool-ctl guest), REST', unit: 'ms', n: null, median: null, p95: null, raw: null, note: `skipped: ${why}` },
  ];
}

/** The seed's v1 exec: one new `ssh` per command. */
function freshSsh(ip: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      'ssh',
      ['-i', KEY, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=5', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', `root@${ip}`, '--', 'true'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    p.stdout.resume();
    p.stderr.on('data', (b: Buffer) => (err += b));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ssh root@${ip} true: exit ${code} ${err.trim()}`))));
  });
}

export async function run(s: BenchSettings, notes: string[]): Promise<Row[]> {
  const N = s.quick ? 8 : 30;
  const HITS = s.quick ? 2 : 3;
  for (const f of [POOL_CTL, BUILD_IMAGE]) if (!existsSync(f)) return skipped(`${f} is not in this tree`);
  const base = join(s.templatesRoot, 'base-template');
  log(`bhyve: building/reusing image ${join(IMAGES, TEMPLATE)}.img`);
  const t0 = performance.now();
  try {
    await sh(BUILD_IMAGE, [TEMPLATE, IMAGES, base], { timeoutMs: 420_000 });
  } catch (err) {
    return skipped(`the image could not be built: ${(err as Error).message.slice(0, 300)}`);
  }
  const buildMs = performance.now() - t0;

  const tag = randomBytes(2).toString('hex');
  const subnet = freeSubnet(range(200, 219, (i) => `10.77.${i}.0/24`));
  const state = mkdtempSync(join(tmpdir(), 'coppice-bench-poolctl-'));
  const env = {
    COPPICE_POOL_CTL_STATE: state,
    COPPICE_POOL_CTL_SUBNET: subnet,
    COPPICE_POOL_CTL_BRIDGE: `cpb${tag}br`,
    COPPICE_POOL_CTL_PREFIX: `cpb${tag}`,
    COPPICE_BHYVE_TEMPLATES_ROOT: IMAGES,
    COPPICE_POOL_KEY: KEY,
  };
  const entry: Extract<ManifestEntry, { kind: 'pool-ctl' }> = { kind: 'pool-ctl', poolCtl: POOL_CTL, env, template: TEMPLATE, bridge: env.COPPICE_POOL_CTL_BRIDGE };
  const unrecord = record(entry);
  const sweepPool = async () => {
    const left = await poolCtlSweep(entry);
    if (left.length) throw new Error(`pool-ctl leftovers: ${left.join(', ')}`);
    unrecord();
  };
  const unregister = onCleanup(`pool-ctl ${state}`, sweepPool);

  const gw = await startBenchGateway({
    templatesRoot: s.templatesRoot,
    args: ['--bhyve-templates-root', IMAGES, '--pool-ctl', POOL_CTL, '--ssh-key', KEY],
    // Built here rather than by startApp so pool-ctl gets this bench's own subnet (startApp's
    // bhyve backend assumes the default 10.77.0.0/24, which tests on this host may be using).
    makeBackends: async (config, logger) => ({
      jail: await platformJailBackend(config, logger),
      bhyve: createBhyveBackend({ poolCtl: { path: POOL_CTL, subnet, env }, keyPath: KEY, logger }),
    }),
  });
  try {
    log(`bhyve: warming ${HITS + 1} guests (prefix ${env.COPPICE_POOL_CTL_PREFIX}, ${subnet})`);
    const tw = performance.now();
    await gw.app.gateway.warmPool(TEMPLATE, HITS + 1);
    const warmMs = performance.now() - tw;

    // Pool hits: create -> ready is pool-ctl checkout + the SSH handshake of the shim.
    const hits: number[] = [];
    const ids: string[] = [];
    for (let i = 0; i < HITS; i++) {
      const t = performance.now();
      const sbx = expect(await gw.api('POST', '/sandboxes', { templateID: TEMPLATE }), [201], 'create bhyve') as { sandboxID: string; ip: string };
      hits.push(performance.now() - t);
      ids.push(sbx.sandboxID);
    }
    const id = ids[0]!;
    const ip = (expect(await gw.api('GET', `/sandboxes/${id}`), [200], 'view') as { ip: string }).ip;

    const rest = async () => {
      const t = performance.now();
      const ex = expect(await gw.api('POST', `/sandboxes/${id}/exec`, { argv: ['true'] }), [200], 'exec') as { exitCode: number };
      if (ex.exitCode !== 0) throw new Error(`exec true exited ${ex.exitCode}`);
      return performance.now() - t;
    };
    const ssh = async () => {
      const t = performance.now();
      await freshSsh(ip);
      return performance.now() - t;
    };
    log(`bhyve: exec round trip, 3 warm-up + ${N} each, alternating`);
    for (let i = 0; i < 3; i++) {
      await rest();
      await ssh();
    }
    const g: number[] = [];
    const r: number[] = [];
    for (let i = 0; i < N; i++) {
      if (i % 2) {
        g.push(await rest());
        r.push(await ssh());
      } else {
        r.push(await ssh());
        g.push(await rest());
      }
    }
    for (const x of ids) expect(await gw.api('DELETE', `/sandboxes/${x}`), [204], 'delete');
    await gw.close(); // drains the pool too
    unregister();
    await sweepPool();
    const prefix = env.COPPICE_POOL_CTL_PREFIX;
    const leaks = [
      ...execFileSync('ip', ['netns', 'list']).toString().split('\n').filter((l) => l.startsWith(prefix)),
      ...execFileSync('ip', ['-o', 'link']).toString().split('\n').filter((l) => l.split(': ')[1]?.startsWith(prefix)),
      ...readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes(state)),
    ];
    if (leaks.length) notes.push(`bhyve leftovers: ${leaks.join('; ')}`);
    return [
      {
        id: 'exec-bhyve',
        name: 'exec round trip `true`, bhyve (Linux pool-ctl guest), REST',
        unit: 'ms',
        n: N,
        median: median(g),
        p95: p95(g),
        raw: median(r),
        rawName: 'a fresh `ssh` per exec with the seed options (v1)',
        extra: { gateway: g, raw: r, imageMs: buildMs, warmMs },
        note: `bhyve guests: image ready in ${(buildMs / 1000).toFixed(1)} s (cached when unchanged), ${HITS + 1} guests warmed in ${(warmMs / 1000).toFixed(1)} s.`,
      },
      {
        id: 'create-bhyve-pool-hit',
        name: 'create -> ready, bhyve pool hit (checkout + SSH connect), REST',
        unit: 'ms',
        n: HITS,
        median: median(hits),
        p95: p95(hits),
        raw: null,
        extra: { samples: hits },
      },
    ];
  } finally {
    await gw.close();
  }
}
