// Streaming exec over WebSocket against a real gateway (in-process) and real runc sandboxes.
// Needs root. Every test destroys the sandboxes it creates; the gateway is closed in `after`.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { startApp, type App } from '../../src/app.ts';
import { configSchema } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { Sandbox } from '../../src/sdk/index.ts';

const root = process.getuid?.() === 0;
const skip = root ? false : 'needs root (runc sandboxes)';
const API_KEY = 'ws-exec-test-key';

let app: App;
let stateDir: string;
const created = new Set<string>();

// ---- helpers ----

async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(app.url + path, {
    method,
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

async function createSandbox(): Promise<string> {
  const r = await api<{ sandboxID: string }>('POST', '/sandboxes', { templateID: 'busybox' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  created.add(r.body.sandboxID);
  return r.body.sandboxID;
}

async function destroySandbox(id: string): Promise<void> {
  const r = await api('DELETE', `/sandboxes/${id}`);
  assert.ok(r.status === 204 || r.status === 404, `destroy ${id}: ${r.status}`);
  created.delete(id);
}

async function withSandboxes<T>(n: number, fn: (ids: string[]) => Promise<T>): Promise<T> {
  const ids = await Promise.all(Array.from({ length: n }, () => createSandbox()));
  try {
    return await fn(ids);
  } finally {
    await Promise.all(ids.map(destroySandbox));
  }
}

interface Frame {
  tag: number;
  data: Buffer;
  t: number;
}

/** A raw protocol client: records every frame with its arrival time. */
class Client {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly messages: Record<string, unknown>[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  httpStatus: number | null = null;
  received = 0;
  private waiters: (() => void)[] = [];

  constructor(sandboxId: string, opts: { headers?: Record<string, string>; protocols?: string[]; record?: boolean } = {}) {
    const url = `${app.url.replace('http', 'ws')}/sandboxes/${sandboxId}/exec/ws`;
    this.ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers ?? { authorization: `Bearer ${API_KEY}` } });
    const record = opts.record ?? true;
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => {
        this.httpStatus = res.statusCode ?? null;
        res.resume();
        reject(new Error(`HTTP ${res.statusCode}`));
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => undefined);
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) {
        this.received += data.length - 1;
        if (record) this.frames.push({ tag: data[0]!, data: data.subarray(1), t: performance.now() });
      } else this.messages.push(JSON.parse(data.toString()));
      for (const w of this.waiters.splice(0)) w();
    });
  }

  send(msg: object | Buffer): void {
    this.ws.send(Buffer.isBuffer(msg) ? msg : JSON.stringify(msg));
  }

  stream(tag: number): Buffer {
    return Buffer.concat(this.frames.filter((f) => f.tag === tag).map((f) => f.data));
  }

  message(type: string): Record<string, unknown> | undefined {
    return this.messages.find((m) => m.type === type);
  }

  /** Wait until `pred` holds (checked on every frame), or fail after `ms`. */
  async until(pred: () => boolean, ms = 20_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), sleep(50)]);
    }
  }

  async exit(ms = 60_000): Promise<Record<string, unknown>> {
    await this.until(() => this.message('exit') !== undefined, ms, 'exit');
    return this.message('exit')!;
  }
}

async function start(sandboxId: string, msg: object): Promise<Client> {
  const c = new Client(sandboxId);
  await c.opened;
  c.send({ type: 'start', ...msg });
  await c.until(() => c.message('started') !== undefined || c.message('error') !== undefined, 20_000, 'started');
  assert.ok(c.message('started'), JSON.stringify(c.message('error')));
  return c;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('WebSocket streaming exec (real runc)', { skip, timeout: 300_000 }, () => {
  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'coppice-ws-state-'));
    const config = configSchema.parse({
      listen: '127.0.0.1:0',
      stateDir,
      templatesRoot: '/var/lib/coppice/templates',
      jailSubnet: '10.78.40.0/24',
      logLevel: 'silent',
    });
    app = await startApp(config, { logger: createLogger('silent'), apiKey: API_KEY });
    for (let i = 0; i < 100 && app.gateway.lifecycle !== 'serving'; i++) await sleep(50);
  });

  after(async () => {
    for (const id of [...created]) await destroySandbox(id).catch(() => undefined);
    await app?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('refuses unauthenticated upgrades (401) and unknown sandboxes (404) before upgrading', async () => {
    await withSandboxes(1, async ([id]) => {
      const none = new Client(id!, { headers: {} });
      await assert.rejects(none.opened);
      assert.equal(none.httpStatus, 401);
      const wrong = new Client(id!, { headers: { 'x-api-key': 'nope' } });
      await assert.rejects(wrong.opened);
      assert.equal(wrong.httpStatus, 401);
      const missing = new Client('zzzzzzzzzz');
      await assert.rejects(missing.opened);
      assert.equal(missing.httpStatus, 404);
      // Browsers: the key as a second subprotocol; the server selects only the protocol name.
      const browser = new Client(id!, { headers: {}, protocols: ['coppice.exec.v1', `coppice.key.${API_KEY}`] });
      await browser.opened;
      assert.equal(browser.ws.protocol, 'coppice.exec.v1');
      browser.send({ type: 'start', argv: ['echo', 'ok'] });
      assert.equal((await browser.exit()).exitCode, 0);
      assert.equal(browser.stream(1).toString(), 'ok\n');
      // A bad first message is refused with 4000 + status.
      const bad = new Client(id!);
      await bad.opened;
      bad.send({ type: 'start', cmd: 'true', argv: ['true'] });
      const closed = await bad.closed;
      assert.equal(closed.code, 4400);
      assert.equal(bad.message('error')?.error, 'bad_request');
    });
  });

  it('(1) delivers lines as they are produced, not all at the end', async () => {
    await withSandboxes(1, async ([id]) => {
      const c = await start(id!, { cmd: 'for i in 1 2 3; do echo $i; sleep 0.3; done' });
      const exit = await c.exit();
      assert.equal(exit.exitCode, 0);
      assert.equal(c.stream(1).toString(), '1\n2\n3\n');
      // Arrival time of each line.
      const at: number[] = [];
      let text = '';
      for (const f of c.frames) {
        for (const ch of f.data.toString()) {
          text += ch;
          if (ch === '\n') at.push(f.t);
        }
      }
      assert.equal(at.length, 3);
      assert.ok(at[1]! - at[0]! > 150, `line 2 came ${Math.round(at[1]! - at[0]!)} ms after line 1`);
      assert.ok(at[2]! - at[1]! > 150, `line 3 came ${Math.round(at[2]! - at[1]!)} ms after line 2`);
    });
  });

  it('(2) streams 50 MB of random bytes byte-exact (sha256 computed inside the sandbox)', async () => {
    await withSandboxes(1, async ([id]) => {
      const c = await start(id!, {
        cmd: 'head -c 50000000 /dev/urandom > /tmp/r && sha256sum /tmp/r >&2 && cat /tmp/r && rm /tmp/r',
      });
      const exit = await c.exit(120_000);
      assert.equal(exit.exitCode, 0, JSON.stringify(exit));
      const out = c.stream(1);
      assert.equal(out.length, 50_000_000);
      assert.equal(exit.outputBytes, 50_000_000 + c.stream(2).length);
      const inside = c.stream(2).toString().split(/\s+/)[0];
      assert.match(inside!, /^[0-9a-f]{64}$/);
      assert.equal(sha256(out), inside);
    });
  });

  it('(3) stdin round trip through cat; close_stdin ends it', async () => {
    await withSandboxes(1, async ([id]) => {
      const c = await start(id!, { argv: ['cat'], stdin: true });
      const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      c.send(binary); // binary frame = raw stdin
      c.send({ type: 'stdin', data: Buffer.from('hello\n').toString('base64') });
      await c.until(() => c.received >= 262, 10_000, 'echo');
      // Still running: cat waits for more until stdin is closed.
      await sleep(300);
      assert.equal(c.message('exit'), undefined);
      const procs = await api<{ processID: string; state: string; stdinOpen: boolean }[]>('GET', `/sandboxes/${id}/processes`);
      const p = procs.body.find((x) => x.processID === c.message('started')!.processID);
      assert.equal(p?.state, 'running');
      assert.equal(p?.stdinOpen, true);
      c.send({ type: 'close_stdin' });
      const exit = await c.exit(10_000);
      assert.equal(exit.exitCode, 0);
      assert.deepEqual(c.stream(1), Buffer.concat([binary, Buffer.from('hello\n')]));
      // stdin after the end is refused politely (no crash, connection already closing).
    });
  });

  it('pipelined start + stdin + close_stdin (before "started") all apply in order', async () => {
    await withSandboxes(1, async ([id]) => {
      const c = new Client(id!);
      await c.opened;
      c.send({ type: 'start', argv: ['cat'], stdin: true });
      c.send(Buffer.from('one '));
      c.send({ type: 'stdin', data: Buffer.from('two').toString('base64') });
      c.send({ type: 'close_stdin' });
      const exit = await c.exit(10_000);
      assert.equal(exit.exitCode, 0);
      assert.equal(c.stream(1).toString(), 'one two');
    });
  });

  it('(4) SIGINT ends `sleep 100` and the exit reports the signal', async () => {
    await withSandboxes(1, async ([id]) => {
      const c = await start(id!, { argv: ['sleep', '100'] });
      await sleep(300);
      const t0 = Date.now();
      c.send({ type: 'signal', signal: 'SIGINT' });
      const exit = await c.exit(10_000);
      assert.ok(Date.now() - t0 < 5_000);
      assert.equal(exit.signal, 'SIGINT');
      assert.equal(exit.exitCode, null);
      const closed = await c.closed;
      assert.equal(closed.code, 1000);
      // Exactly one exit message.
      assert.equal(c.messages.filter((m) => m.type === 'exit').length, 1);
    });
  });

  it('timeoutMs kills the command and the exit says "timeout"', async () => {
    await withSandboxes(1, async ([id]) => {
      const t0 = Date.now();
      const c = await start(id!, { argv: ['sleep', '100'], timeoutMs: 500 });
      const exit = await c.exit(10_000);
      assert.equal(exit.reason, 'timeout');
      assert.equal(exit.signal, 'SIGKILL');
      assert.ok(Date.now() - t0 < 5_000);
    });
  });

  it('(5) disconnect does not kill; re-attach gets the rest and the exit; late re-attach gets the exit', async () => {
    await withSandboxes(1, async ([id]) => {
      const script = 'for i in $(seq 1 15); do echo line$i; sleep 0.1; done; exit 3';
      const expected = Array.from({ length: 15 }, (_, i) => `line${i + 1}\n`).join('');
      const first = await start(id!, { cmd: script });
      const processID = first.message('started')!.processID as string;
      await first.until(() => first.stream(1).toString().includes('line3\n'), 10_000, 'line3');
      first.ws.terminate(); // abrupt, like a dropped network
      await first.closed;
      const seen = first.stream(1);
      await sleep(400);
      const listed = await api<{ processID: string; state: string; clients: number; outputBytes: number }[]>('GET', `/sandboxes/${id}/processes`);
      const p = listed.body.find((x) => x.processID === processID)!;
      assert.equal(p.state, 'running');
      assert.equal(p.clients, 0);
      assert.ok(p.outputBytes > seen.length, 'it kept producing while detached');

      const again = new Client(id!);
      await again.opened;
      again.send({ type: 'attach', processID, from: seen.length });
      const exit = await again.exit(10_000);
      const attached = again.message('attached')!;
      assert.equal(attached.from, seen.length);
      assert.equal(attached.dropped, 0);
      assert.equal(exit.exitCode, 3);
      assert.equal(Buffer.concat([seen, again.stream(1)]).toString(), expected);

      // After the end: the exit (and the output, still within the replay buffer) are kept.
      const late = new Client(id!);
      await late.opened;
      late.send({ type: 'attach', processID });
      const lateExit = await late.exit(10_000);
      assert.equal(lateExit.exitCode, 3);
      assert.equal(late.message('attached')!.running, false);
      assert.equal(late.stream(1).toString(), expected);

      // Offsets beyond the output are a 400; unknown processes a 404.
      const beyond = new Client(id!);
      await beyond.opened;
      beyond.send({ type: 'attach', processID, from: 10_000_000 });
      assert.equal((await beyond.closed).code, 4400);
      const unknown = new Client(id!);
      await unknown.opened;
      unknown.send({ type: 'attach', processID: '999999' });
      assert.equal((await unknown.closed).code, 4404);
    });
  });

  it('a re-attach older than the replay buffer is told how many bytes were dropped', async () => {
    await withSandboxes(1, async ([id]) => {
      // 6 MB while nobody listens: the replay buffer keeps the last 4 MiB.
      const c = await start(id!, { cmd: 'sleep 0.3; head -c 6000000 /dev/zero' });
      const processID = c.message('started')!.processID as string;
      c.ws.terminate();
      await c.closed;
      for (let i = 0; i < 100; i++) {
        const l = await api<{ processID: string; state: string }[]>('GET', `/sandboxes/${id}/processes`);
        if (l.body.find((x) => x.processID === processID)?.state === 'exited') break;
        await sleep(100);
      }
      const late = new Client(id!);
      await late.opened;
      late.send({ type: 'attach', processID, from: 0 });
      const exit = await late.exit(10_000);
      const attached = late.message('attached')!;
      const dropped = attached.dropped as number;
      assert.ok(dropped > 0, 'some bytes were dropped');
      assert.ok(6_000_000 - dropped <= 4 * 1024 * 1024, `kept ${6_000_000 - dropped} bytes`);
      assert.equal(attached.from, dropped);
      assert.equal(late.received, 6_000_000 - dropped);
      assert.equal(exit.outputBytes, 6_000_000);
    });
  });

  it('two attached clients both get every byte (lossless readers)', async () => {
    await withSandboxes(1, async ([id]) => {
      const a = await start(id!, { cmd: 'sleep 0.5; seq 1 100000' });
      const b = new Client(id!);
      await b.opened;
      b.send({ type: 'attach', processID: a.message('started')!.processID, from: 0 });
      const [ea, eb] = await Promise.all([a.exit(), b.exit()]);
      assert.equal(ea.exitCode, 0);
      assert.equal(eb.exitCode, 0);
      const expected = Array.from({ length: 100000 }, (_, i) => `${i + 1}\n`).join('');
      assert.equal(a.stream(1).toString(), expected);
      assert.equal(b.stream(1).toString(), expected);
    });
  });

  it('(6) 50 concurrent streams over 10 sandboxes all complete with correct output', async () => {
    await withSandboxes(10, async (ids) => {
      const runs = Array.from({ length: 50 }, async (_, k) => {
        const id = ids[k % 10]!;
        const c = await start(id, { cmd: `echo begin-${k}; seq 1 20000; echo end-${k} >&2; exit ${k % 7}` });
        const exit = await c.exit(120_000);
        return { k, c, exit };
      });
      const expectedSeq = Array.from({ length: 20000 }, (_, i) => `${i + 1}\n`).join('');
      for (const { k, c, exit } of await Promise.all(runs)) {
        assert.equal(exit.exitCode, k % 7, `stream ${k}`);
        assert.equal(c.stream(1).toString(), `begin-${k}\n${expectedSeq}`, `stream ${k} stdout`);
        assert.equal(c.stream(2).toString(), `end-${k}\n`, `stream ${k} stderr`);
      }
    });
  });

  it('(7) a client that stops reading does not grow the gateway: the command is held back', async (t) => {
    await withSandboxes(1, async ([id]) => {
      const TOTAL = 200_000_000;
      global.gc?.();
      const rss0 = process.memoryUsage().rss;
      const c = new Client(id!, { record: false });
      await c.opened;
      c.send({ type: 'start', argv: ['head', '-c', String(TOTAL), '/dev/zero'] });
      await c.until(() => c.message('started') !== undefined, 10_000, 'started');
      c.ws.pause(); // stop reading the socket: TCP fills, then the gateway must hold back
      const processID = c.message('started')!.processID as string;
      const entry = app.gateway.processEntry(id!, processID);
      await sleep(2_000);
      const s1 = entry.channel.stats();
      await sleep(1_500);
      const s2 = entry.channel.stats();
      const rssGrowth = process.memoryUsage().rss - rss0;
      t.diagnostic(`stalled: produced ${s2.outputBytes} B, retained ${s2.retainedBytes} B, rss +${Math.round(rssGrowth / 1048576)} MiB`);
      // The command is blocked: no more output while the client does not read.
      assert.equal(s2.outputBytes, s1.outputBytes, 'output stopped growing');
      assert.ok(s2.sourcePaused, 'the source pipes are paused');
      assert.ok(s2.outputBytes < 60_000_000, `only ${s2.outputBytes} of ${TOTAL} bytes were produced`);
      // Bounded: the replay buffer (4 MiB + one chunk) plus the ws high-water mark (1 MiB + one frame).
      assert.ok(s2.retainedBytes <= 4 * 1024 * 1024 + 128 * 1024, `retained ${s2.retainedBytes}`);
      assert.ok(rssGrowth < 100 * 1024 * 1024, `rss grew ${Math.round(rssGrowth / 1048576)} MiB`);
      // Reading again lets it finish, byte-complete.
      c.ws.resume();
      const exit = await c.exit(120_000);
      assert.equal(exit.exitCode, 0);
      assert.equal(c.received, TOTAL);
      assert.ok(entry.channel.stats().pauses >= 1);
    });
  });

  it('pausing the sandbox freezes a running stream; resuming continues it', async () => {
    await withSandboxes(1, async ([id]) => {
      const c = await start(id!, { cmd: 'i=0; while [ $i -lt 60 ]; do echo tick$i; i=$((i+1)); sleep 0.05; done' });
      await c.until(() => c.frames.length >= 3, 10_000, 'first ticks');
      assert.equal((await api('POST', `/sandboxes/${id}/pause`)).status, 204);
      await sleep(200); // anything in flight lands
      const frozenAt = c.received;
      await sleep(1_000);
      assert.equal(c.received, frozenAt, 'no output while paused');
      assert.equal(c.message('exit'), undefined);
      const view = await api<{ state: string }>('GET', `/sandboxes/${id}`);
      assert.equal(view.body.state, 'paused');
      assert.equal((await api('POST', `/sandboxes/${id}/resume`)).status, 204);
      const exit = await c.exit(20_000);
      assert.equal(exit.exitCode, 0);
      assert.ok(c.received > frozenAt, 'output continued after resume');
      const expected = Array.from({ length: 60 }, (_, i) => `tick${i}\n`).join('');
      assert.equal(c.stream(1).toString(), expected);
    });
  });

  it('destroying the sandbox ends an attached stream with an exit that says "killed"', async () => {
    const id = await createSandbox();
    try {
      const c = await start(id, { cmd: 'echo up; sleep 100' });
      await c.until(() => c.received > 0, 10_000, 'first output');
      await destroySandbox(id);
      const exit = await c.exit(20_000);
      assert.equal(exit.reason, 'killed');
      assert.equal(exit.exitCode, null);
      assert.equal((await c.closed).code, 1000);
    } finally {
      if (created.has(id)) await destroySandbox(id);
    }
  });

  it('the buffered REST /exec runs through the same process table', async () => {
    await withSandboxes(1, async ([id]) => {
      const r = await api<{ processID: string; stdout: string; exitCode: number }>('POST', `/sandboxes/${id}/exec`, { cmd: 'echo rest; exit 4' });
      assert.equal(r.status, 200);
      assert.equal(r.body.stdout, 'rest\n');
      assert.equal(r.body.exitCode, 4);
      const listed = await api<{ processID: string; kind: string; exit: { exitCode: number } }[]>('GET', `/sandboxes/${id}/processes`);
      const p = listed.body.find((x) => x.processID === r.body.processID);
      assert.equal(p?.kind, 'buffered');
      assert.equal(p?.exit.exitCode, 4);
      // ...and can be attached to after the fact.
      const late = new Client(id!);
      await late.opened;
      late.send({ type: 'attach', processID: r.body.processID });
      assert.equal((await late.exit()).exitCode, 4);
      assert.equal(late.stream(1).toString(), 'rest\n');
    });
  });

  it('SDK: execStream (iterator and callbacks), attach, typed errors', async () => {
    const sb = await Sandbox.create('busybox', { url: app.url, apiKey: API_KEY });
    created.add(sb.sandboxID);
    try {
      const chunks: string[] = [];
      for await (const c of sb.execStream('echo a; echo b >&2')) chunks.push(`${c.stream}:${c.data}`);
      assert.deepEqual(chunks.sort(), ['stderr:b\n', 'stdout:a\n']);
      let out = '';
      const s = sb.execStream(['cat'], { stdin: true, onStdout: (b) => (out += b) });
      s.write('piped');
      s.closeStdin();
      const exit = await s.exited;
      assert.equal(exit.exitCode, 0);
      assert.equal(out, 'piped');
      assert.equal((await sb.exec('echo buffered')).stdout, 'buffered\n');
      const again = sb.attach(exit.processID);
      let replay = '';
      for await (const c of again) replay += c.data;
      assert.equal(replay, 'piped');
      await assert.rejects(sb.attach('424242').exited, (e: Error) => e.name === 'NotFoundError');
      await assert.rejects(Sandbox.connect('zzzzzzzzzz', { url: app.url, apiKey: API_KEY }), (e: Error) => e.name === 'NotFoundError');
      await assert.rejects(Sandbox.connect(sb.sandboxID, { url: app.url, apiKey: 'bad' }), (e: Error) => e.name === 'AuthenticationError');
    } finally {
      await sb.kill();
      created.delete(sb.sandboxID);
    }
  });
});
