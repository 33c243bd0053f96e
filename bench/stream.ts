// Streaming throughput: the same command on the same sandbox, read (a) straight from `runc exec`'s
// stdout pipe and (b) through the gateway's exec WebSocket, in the same run; prints MB/s and the ratio.
//
//   node --import tsx bench/stream.ts [--mb 256] [--runs 5] [--template busybox]
//
// The gateway runs as its own process (`bin/coppice.mjs serve`, as in production), so the bench
// process is only the reader in both cases. Needs root (runc). Two producers: `dd bs=64k` from
// /dev/zero (large writes: the pipe path itself is measured) and busybox `head -c` (which writes in
// small pieces, so per-chunk costs show).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { Sandbox } from '../src/sdk/index.ts';

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '256' },
    runs: { type: 'string', default: '5' },
    template: { type: 'string', default: 'busybox' },
    subnet: { type: 'string', default: '10.78.42.0/24' },
  },
});
const MIB = Number(values.mb);
const BYTES = MIB * 1024 * 1024;
const PRODUCERS: Record<string, string[]> = {
  'dd bs=64k': ['dd', 'if=/dev/zero', 'bs=65536', `count=${MIB * 16}`],
  'head -c (small writes)': ['head', '-c', String(BYTES), '/dev/zero'],
};
const RUNS = Number(values.runs);
const API_KEY = 'bench-stream-key';
const BIN = new URL('../bin/coppice.mjs', import.meta.url).pathname;

async function startGateway(stateDir: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', '--state-dir', stateDir, '--jail-subnet', values.subnet!, '--log-level', 'warn'], {
    env: { ...process.env, COPPICE_API_KEY: API_KEY },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (b: Buffer) => {
      err += b;
      const m = /coppice listening on (\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`gateway exited ${code}: ${err}`)));
  });
  child.stderr!.resume();
  return { url, child };
}

/** (a) runc exec piped directly into this process. */
function direct(container: string, argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let n = 0;
    const p = spawn('runc', ['exec', container, ...argv], { stdio: ['ignore', 'pipe', 'ignore'] });
    p.stdout.on('data', (b: Buffer) => (n += b.length));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0 || n !== BYTES) return reject(new Error(`runc exec: exit ${code}, ${n} bytes`));
      resolve(performance.now() - t0);
    });
  });
}

/** (b) the same command through the gateway's WebSocket (a raw protocol client). */
function gateway(url: string, sandboxId: string, argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let n = 0;
    const ws = new WebSocket(`${url.replace('http', 'ws')}/sandboxes/${sandboxId}/exec/ws`, { headers: { authorization: `Bearer ${API_KEY}` } });
    ws.on('open', () => ws.send(JSON.stringify({ type: 'start', argv })));
    ws.on('message', (d: Buffer, isBinary) => {
      if (isBinary) {
        if (d[0] === 1) n += d.length - 1;
      }
      else {
        const m = JSON.parse(d.toString()) as { type: string; exitCode?: number };
        if (m.type === 'exit') {
          const ms = performance.now() - t0;
          if (m.exitCode !== 0 || n !== BYTES) reject(new Error(`gateway: exit ${m.exitCode}, ${n} bytes`));
          else resolve(ms);
        }
      }
    });
    ws.on('error', reject);
  });
}

/** (c) through the SDK's async iterator (what an application sees). */
async function sdk(sb: Sandbox, argv: string[]): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  const s = sb.execStream(argv);
  for await (const c of s) if (c.stream === 'stdout') n += c.data.length;
  const exit = await s.exited;
  if (exit.exitCode !== 0 || n !== BYTES) throw new Error(`sdk: exit ${exit.exitCode}, ${n} bytes`);
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mbps = (ms: number) => BYTES / 1e6 / (ms / 1000);

const stateDir = mkdtempSync(join(tmpdir(), 'coppice-bench-'));
const gw = await startGateway(stateDir);
let sb: Sandbox | undefined;
try {
  sb = await Sandbox.create(values.template!, { url: gw.url, apiKey: API_KEY });
  const container = `coppice-${sb.sandboxID}`;
  console.log(`streaming ${MIB} MiB from /dev/zero on sandbox ${sb.sandboxID} (${values.template}), ${RUNS} runs per path, alternating`);
  const row = (name: string, ms: number[]) =>
    console.log(`  ${name.padEnd(28)} median ${mbps(median(ms)).toFixed(0).padStart(6)} MB/s   (runs: ${ms.map((x) => mbps(x).toFixed(0)).join(', ')})`);
  for (const [label, argv] of Object.entries(PRODUCERS)) {
    await direct(container, argv); // warm-up both paths
    await gateway(gw.url, sb.sandboxID, argv);
    const t = { direct: [] as number[], gateway: [] as number[], sdk: [] as number[] };
    for (let i = 0; i < RUNS; i++) {
      t.direct.push(await direct(container, argv));
      t.gateway.push(await gateway(gw.url, sb.sandboxID, argv));
      t.sdk.push(await sdk(sb, argv));
    }
    console.log(`${label}:`);
    row('runc exec, piped directly', t.direct);
    row('gateway WebSocket (raw ws)', t.gateway);
    row('gateway WebSocket (SDK)', t.sdk);
    const d = median(t.direct);
    console.log(`  ratio gateway/direct: ${(d / median(t.gateway)).toFixed(2)}   sdk/direct: ${(d / median(t.sdk)).toFixed(2)}`);
  }
} finally {
  await sb?.kill().catch(() => undefined);
  gw.child.kill('SIGINT');
  await new Promise((r) => gw.child.once('exit', r));
  rmSync(stateDir, { recursive: true, force: true });
}
