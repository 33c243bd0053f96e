// Exec round trip of `true` on ONE live jail sandbox: REST POST /sandboxes/:id/exec against
// `runc exec coppice-<id> true` on the very same container, alternating, same machine load.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildExecProcess, nofile } from '../../src/backends/jail/linux/oci-config.ts';
import { TemplateUsers } from '../../src/backends/jail/linux/users.ts';
import { platformJailBackend } from '../../src/app.ts';
import type { Backend, SandboxHandle } from '../../src/backends/types.ts';
import { onCleanup, record } from '../lib/cleanup.ts';
import { startBenchGateway } from '../lib/gateway.ts';
import { expect } from '../lib/http.ts';
import { log } from '../lib/host.ts';
import { median, p95 } from '../lib/stats.ts';
import type { BenchSettings, Row } from '../lib/types.ts';

function runcExec(container: string, pre: string[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('runc', ['exec', ...pre, container, ...(pre.length ? [] : ['true'])], { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout.resume();
    p.stderr.resume();
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`runc exec ${container} true: exit ${code}`))));
  });
}

export async function run(s: BenchSettings, notes: string[]): Promise<Row[]> {
  const N = s.quick ? 10 : 40;
  const template = 'base';
  // Keep a handle on the gateway's own jail backend, to time its exec() without the gateway.
  let jail: Backend | undefined;
  const gw = await startBenchGateway({
    templatesRoot: s.templatesRoot,
    makeBackends: async (config, logger) => ({ jail: (jail = await platformJailBackend(config, logger)) }),
  });
  try {
    const sbx = expect(await gw.api('POST', '/sandboxes', { templateID: template }), [201], 'create') as { sandboxID: string };
    const container = `coppice-${sbx.sandboxID}`;
    const g: number[] = [];
    const r: number[] = [];
    const rp: number[] = [];
    const rd: number[] = [];
    // A third column for the breakdown: runc invoked exactly as the driver invokes it (process.json
    // for the template's default user, --pid-file), written fresh per exec, but no gateway.
    const scratch = mkdtempSync(join(tmpdir(), 'coppice-bench-exec-'));
    const unrecord = record({ kind: 'dir', dir: scratch });
    onCleanup(`dir ${scratch}`, () => {
      rmSync(scratch, { recursive: true, force: true });
      unrecord();
    });
    const users = new TemplateUsers();
    const templatePath = join(s.templatesRoot, `${template}-template`);
    const hard = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    const proc = buildExecProcess({
      argv: ['true'],
      user: users.resolve(templatePath, users.has(templatePath, 'user') ? 'user' : 'root'),
      rlimits: [nofile(hard === undefined || hard === 'unlimited' ? Infinity : Number(hard))],
    });
    // The driver's exec() called directly (node spawn, pipes, process.json, exit mapping), same sandbox.
    const handle: SandboxHandle = { id: sbx.sandboxID, backend: 'jail', template, ip: '', data: { templatePath } };
    const driver = async () => {
      const t0 = performance.now();
      const p = jail!.exec(handle, { argv: ['true'] });
      p.stdout.resume();
      p.stderr.resume();
      p.stdin.end();
      const exit = await p.exited;
      if (exit.exitCode !== 0) throw new Error(`driver exec exited ${exit.exitCode}`);
      return performance.now() - t0;
    };
    let seq = 0;
    const driverLike = async () => {
      const t0 = performance.now();
      const f = join(scratch, `exec-${++seq}`);
      writeFileSync(`${f}.json`, JSON.stringify(proc), { mode: 0o600 });
      await runcExec(container, ['--process', `${f}.json`, '--pid-file', `${f}.pid`]);
      rmSync(`${f}.json`, { force: true });
      rmSync(`${f}.pid`, { force: true });
      return performance.now() - t0;
    };
    const rest = async () => {
      const t0 = performance.now();
      const ex = expect(await gw.api('POST', `/sandboxes/${sbx.sandboxID}/exec`, { argv: ['true'] }), [200], 'exec') as { exitCode: number };
      if (ex.exitCode !== 0) throw new Error(`exec true exited ${ex.exitCode}`);
      return performance.now() - t0;
    };
    const direct = async () => {
      const t0 = performance.now();
      await runcExec(container);
      return performance.now() - t0;
    };
    log(`exec round trip on ${template}: 3 warm-up + ${N} each, order rotating`);
    for (let i = 0; i < 3; i++) {
      await rest();
      await direct();
      await driverLike();
      await driver();
    }
    for (let i = 0; i < N; i++) {
      // Rotate the order, so no variant always follows the same other one.
      const order: [number[], () => Promise<number>][] = [[g, rest], [r, direct], [rp, driverLike], [rd, driver]];
      for (let k = 0; k < order.length; k++) {
        const [xs, f] = order[(i + k) % order.length]!;
        xs.push(await f());
      }
    }
    expect(await gw.api('DELETE', `/sandboxes/${sbx.sandboxID}`), [204], 'delete');
    await gw.close();
    const left = await gw.leftovers([sbx.sandboxID]);
    if (left.length) notes.push(`left behind: ${left.join(', ')}`);
    const ratio = median(g) / median(r);
    return [
      {
        id: 'exec-jail',
        name: `exec round trip \`true\`, jail (${template}), REST`,
        unit: 'ms',
        n: N,
        median: median(g),
        p95: p95(g),
        raw: median(r),
        rawName: '`runc exec coppice-<id> true`, same sandbox',
        goal: { text: '<= 1.1x raw', met: ratio <= 1.1 },
        extra: { gateway: g, raw: r, runcAsDriver: rp, driverExec: rd },
        note:
          `Breakdown (medians, same sandbox, order rotating): bare \`runc exec <c> true\` ${median(r).toFixed(1)} ms; ` +
          `runc invoked exactly as the driver does (\`--process <json> --pid-file\`, template default user) ${median(rp).toFixed(1)} ms; ` +
          `the driver's exec() called in-process, no gateway ${median(rd).toFixed(1)} ms; REST ${median(g).toFixed(1)} ms.`,
      },
    ];
  } finally {
    await gw.close();
  }
}
