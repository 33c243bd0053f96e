// Exec output memory (issue 13 item 6): buffered execs capped at 16 MiB keep the gateway's RSS
// bounded (read from /proc of the gateway child process), also when their commands write far past
// the cap, and the memory is given back once they are answered; a detached command nobody reads
// is backpressured, so the gateway spends almost no CPU on it (utime+stime from /proc/<pid>/stat
// over a few seconds: a fact check with a generous bound, not a timing).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createLinuxJailBackend, findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { startChildGateway, waitHealthy, type ChildGateway } from '../helpers/child-gateway.ts';
import { TEMPLATES_ROOT } from '../helpers/gateway.ts';
import { freeSubnet } from '../helpers/jail-app.ts';
import { ExecWsClient } from '../helpers/ws-exec-client.ts';

const skip = process.getuid?.() !== 0 ? 'needs root' : !existsSync(join(TEMPLATES_ROOT, 'busybox-template')) ? 'no busybox template' : false;
const MB = 1024 * 1024;

const rssMB = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
/** utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat). */
const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return Number(f[11]) + Number(f[12]);
};

/** Full GC in the gateway (heap snapshot on SIGUSR2), then its RSS; /health answers once it is done. */
async function rssAfterFullGc(c: ChildGateway): Promise<number> {
  c.proc.kill('SIGUSR2');
  await new Promise((res) => setTimeout(res, 50));
  assert.equal((await fetch(`${c.url}/health`)).status, 200);
  return rssMB(c.proc.pid!);
}

describe('exec output memory and backpressure', { skip }, () => {
  let c: ChildGateway;
  let id: string;
  let diagDir: string | undefined;

  after(async () => {
    if (!c) return;
    if (c.proc.exitCode === null && c.proc.signalCode === null) {
      c.proc.kill('SIGINT');
      await c.exit;
    }
    if (id && (await findLeftovers([id], { stateDir: c.stateDir })).length > 0) {
      const b = await createLinuxJailBackend({ stateDir: c.stateDir });
      await b.destroy({ id, backend: 'jail', template: 'busybox', ip: '', data: {} });
      await b.close();
    }
    rmSync(c.stateDir, { recursive: true, force: true });
    if (diagDir) rmSync(diagDir, { recursive: true, force: true });
  });

  it('buffered execs past their 16 MiB cap keep the gateway RSS bounded and give it back', async () => {
    // SIGUSR2 makes the gateway write a heap snapshot, which runs a full GC first: RSS read after
    // it shows what is still held, not garbage V8 has not collected yet.
    diagDir = mkdtempSync(join(tmpdir(), 'coppice-diag-'));
    c = await startChildGateway(['--jail-subnet', freeSubnet(), '--drain-timeout', '20'], {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${diagDir}`,
    });
    await waitHealthy(c.url);
    const r = await c.api('POST', '/sandboxes', { templateID: 'busybox', timeout: 600 });
    assert.equal(r.status, 201);
    id = ((await r.json()) as { sandboxID: string }).sandboxID;
    const pid = c.proc.pid!;
    const exec = async (cmd: string) => {
      const res = await c.api('POST', `/sandboxes/${id}/exec`, { cmd, timeoutMs: 120_000 });
      const text = await res.text();
      assert.equal(res.status, 200, text.slice(0, 300));
      return JSON.parse(text) as { stdout: string; truncated: boolean; exitCode: number };
    };
    await exec('true');
    const base = rssMB(pid);
    let peak = base;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, rssMB(pid));
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    // Each writes 64 MiB of text: 16 MiB is kept, the rest read and dropped. Four at once, three times.
    for (let round = 0; round < 3; round++) {
      const outs = await Promise.all([0, 1, 2, 3].map(() => exec('yes abcdefghijklmnopqrstuvwxyz0123456789 | head -c 67108864')));
      for (const o of outs) {
        assert.equal(o.truncated, true);
        assert.equal(o.stdout.length, 16 * MB);
      }
    }
    sampling = false;
    await sampler;
    // Answered: neither the captured output nor the bytes read past the cap are held for the
    // process table's 10-minute retention of the 12 finished commands.
    const held = await rssAfterFullGc(c);
    process.stderr.write(`# gateway RSS: ${base.toFixed(0)} MB idle, peak ${peak.toFixed(0)} MB (4 concurrent 16 MiB-capped execs x3), ${held.toFixed(0)} MB after a full GC\n`);
    assert.ok(held - base < 200, `still held after 12 execs: ${held.toFixed(0)} MB over an idle ${base.toFixed(0)} MB`);
    // Each reply of 16 MiB is built as a string, JSON and an HTTP write (src/actors/gateway.ts, the
    // edge): ~70 MB each at the peak, plus garbage not collected yet; 4 at once stay under 4 x 130 MB
    // (before: ~590 MB over idle, and 400 MB of it still held after a full GC).
    assert.ok(peak - base < 4 * 130, `peak ${peak.toFixed(0)} MB over an idle ${base.toFixed(0)} MB`);
  });

  it('a detached command nobody reads costs the gateway almost no CPU', async () => {
    const pid = c.proc.pid!;
    // Started over the exec WebSocket, then the client goes away: nobody reads its output.
    const ws = new ExecWsClient(c.url, id, c.key, { keep: false });
    const processID = await ws.start({ type: 'start', cmd: 'cat /dev/zero' });
    ws.ws.terminate();
    await ws.closed;
    await new Promise((res) => setTimeout(res, 500));
    const t0 = cpuTicks(pid);
    const wall0 = Date.now();
    await new Promise((res) => setTimeout(res, 3000));
    const ticks = cpuTicks(pid) - t0;
    const seconds = (Date.now() - wall0) / 1000;
    const hz = 100; // USER_HZ on Linux
    const share = ticks / hz / seconds;
    const view = (await (await c.api('GET', `/sandboxes/${id}/processes`)).json()) as { processID: string; state: string; outputBytes: number }[];
    const p = view.find((v) => v.processID === processID);
    process.stderr.write(`# unread detached command: gateway CPU ${(share * 100).toFixed(1)}% of a core; output read so far ${Math.round((p?.outputBytes ?? 0) / MB)} MiB\n`);
    assert.equal(p?.state, 'running');
    assert.ok(share < 0.2, `gateway used ${(share * 100).toFixed(0)}% of a core on output nobody reads`);
  });
});
