// A terminal over the streaming exec WebSocket (`"pty"` in the start message, `resize` messages),
// against a real in-process gateway and real runc sandboxes whose init is coppice-agent.
// Needs root and the installed agent. Every test destroys the sandboxes it creates.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { startApp, type App } from '../../src/app.ts';
import { DEFAULT_AGENT } from '../../src/backends/jail/linux/index.ts';
import { configSchema } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (runc sandboxes)' : !existsSync(DEFAULT_AGENT) ? 'needs coppice-agent (ops/setup.sh)' : false;
const API_KEY = 'ws-pty-test-key';

async function startGateway(subnet: string, jailAgent: 'on' | 'off'): Promise<{ app: App; stateDir: string }> {
  const stateDir = mkdtempSync(join(tmpdir(), 'coppice-pty-state-'));
  const config = configSchema.parse({
    listen: '127.0.0.1:0',
    stateDir,
    templatesRoot: '/var/lib/coppice/templates',
    jailSubnet: subnet,
    jailAgent,
    logLevel: 'silent',
  });
  const app = await startApp(config, { logger: createLogger('silent'), apiKey: API_KEY });
  for (let i = 0; i < 100 && app.gateway.lifecycle !== 'serving'; i++) await sleep(50);
  return { app, stateDir };
}

async function api<T = unknown>(app: App, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(app.url + path, {
    method,
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** One sandbox of `base` (it has tty, stty and an interactive sh) for the length of fn. */
async function withSandbox(app: App, fn: (id: string) => Promise<void>): Promise<void> {
  const r = await api<{ sandboxID: string }>(app, 'POST', '/sandboxes', { templateID: 'base' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const id = r.body.sandboxID;
  try {
    await fn(id);
  } finally {
    const d = await api(app, 'DELETE', `/sandboxes/${id}`);
    assert.ok(d.status === 204 || d.status === 404, `destroy ${id}: ${d.status}`);
  }
}

/** A raw protocol client that keeps the terminal's bytes (tag 1) and every JSON message. */
class Term {
  readonly ws: WebSocket;
  readonly messages: Record<string, unknown>[] = [];
  readonly tags = new Set<number>();
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  private out = '';
  private waiters: (() => void)[] = [];

  constructor(app: App, sandboxId: string) {
    this.ws = new WebSocket(`${app.url.replace('http', 'ws')}/sandboxes/${sandboxId}/exec/ws`, [], { headers: { authorization: `Bearer ${API_KEY}` } });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) {
        this.tags.add(data[0]!);
        this.out += data.subarray(1).toString('utf8');
      } else this.messages.push(JSON.parse(data.toString()));
      for (const w of this.waiters.splice(0)) w();
    });
  }

  get output(): string {
    return this.out;
  }

  send(msg: object | Buffer): void {
    this.ws.send(Buffer.isBuffer(msg) ? msg : JSON.stringify(msg));
  }

  message(type: string): Record<string, unknown> | undefined {
    return this.messages.find((m) => m.type === type);
  }

  /** Wait until `pred` holds (checked on every frame); fail after `ms` saying what was seen. */
  async until(pred: () => boolean, what: string, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output so far: ${JSON.stringify(this.out)} messages: ${JSON.stringify(this.messages)}`);
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), sleep(50)]);
    }
  }

  async exit(): Promise<Record<string, unknown>> {
    await this.until(() => this.message('exit') !== undefined, 'exit');
    return this.message('exit')!;
  }
}

async function open(app: App, sandboxId: string, start: object): Promise<Term> {
  const t = new Term(app, sandboxId);
  await t.opened;
  t.send({ type: 'start', ...start });
  await t.until(() => t.message('started') !== undefined || t.message('error') !== undefined, 'started');
  return t;
}

describe('WebSocket exec on a terminal (real runc, coppice-agent)', { skip, timeout: 300_000 }, () => {
  let gw: { app: App; stateDir: string };
  before(async () => {
    gw = await startGateway('10.78.44.0/24', 'on');
  });
  after(async () => {
    await gw?.app.close();
    if (gw) rmSync(gw.stateDir, { recursive: true, force: true });
  });

  it('gives the command a terminal: tty is a /dev/pts path, stdin is a tty, TERM is xterm-256color, one stream', async () => {
    await withSandbox(gw.app, async (id) => {
      const t = await open(gw.app, id, { cmd: 'tty; test -t 0 && echo stdin-is-a-tty; echo "term=$TERM"; echo oops >&2', pty: { cols: 80, rows: 24 } });
      assert.ok(t.message('started'), JSON.stringify(t.message('error')));
      const exit = await t.exit();
      assert.equal(exit.exitCode, 0, t.output);
      assert.match(t.output, /^\/dev\/pts\/\d+\r?$/m);
      assert.match(t.output, /^stdin-is-a-tty\r?$/m);
      assert.match(t.output, /^term=xterm-256color\r?$/m);
      assert.match(t.output, /^oops\r?$/m); // stderr is the terminal too
      assert.deepEqual([...t.tags], [1]);
    });
  });

  it('TERM from env wins; without pty the command has no terminal', async () => {
    await withSandbox(gw.app, async (id) => {
      const t = await open(gw.app, id, { cmd: 'echo "term=$TERM"', env: { TERM: 'vt100' }, pty: { cols: 80, rows: 24 } });
      assert.equal((await t.exit()).exitCode, 0);
      assert.match(t.output, /^term=vt100\r?$/m);
      const plain = await open(gw.app, id, { cmd: 'test -t 0 || echo no-tty' });
      assert.equal((await plain.exit()).exitCode, 0);
      assert.equal(plain.output, 'no-tty\n');
    });
  });

  it('stty size reports the start size, and the new one after a resize message', async () => {
    await withSandbox(gw.app, async (id) => {
      const t = await open(gw.app, id, { cmd: 'stty size; read line; stty size', stdin: true, pty: { cols: 80, rows: 24 } });
      assert.ok(t.message('started'), JSON.stringify(t.message('error')));
      await t.until(() => /^24 80\r?$/m.test(t.output), 'the first stty size');
      t.send({ type: 'resize', cols: 120, rows: 40 });
      t.send(Buffer.from('\n')); // after the resize on the one ordered path: read returns, stty runs again
      const exit = await t.exit();
      assert.equal(exit.exitCode, 0, t.output);
      assert.match(t.output, /^40 120\r?$/m);
    });
  });

  it('Ctrl-C (0x03 on stdin) interrupts the foreground job of an interactive sh, and the shell lives on', async () => {
    await withSandbox(gw.app, async (id) => {
      const t = await open(gw.app, id, { argv: ['sh', '-i'], stdin: true, pty: { cols: 80, rows: 24 } });
      assert.ok(t.message('started'), JSON.stringify(t.message('error')));
      // "sleeping-3" (not the echoed "$((1+2))") shows the shell ran the line; sleep follows at once.
      t.send(Buffer.from("sh -c 'echo sleeping-$((1+2)); exec sleep 30'\n"));
      await t.until(() => t.output.includes('sleeping-3'), 'the job to start');
      t.send(Buffer.from([0x03]));
      t.send(Buffer.from('echo alive-$((2+2))\n'));
      // Were the sleep not interrupted, this would take 30 s: longer than the wait allows.
      await t.until(() => t.output.includes('alive-4'), 'the shell to run echo after Ctrl-C', 20_000);
      t.send(Buffer.from('exit 7\n'));
      const exit = await t.exit();
      assert.equal(exit.exitCode, 7, t.output);
    });
  });

  it('refuses a bad pty size naming the field; a resize out of range is an error that keeps the connection', async () => {
    await withSandbox(gw.app, async (id) => {
      for (const [pty, field] of [
        [{ cols: 0, rows: 24 }, 'pty.cols'],
        [{ cols: 80, rows: 1001 }, 'pty.rows'],
        [{ cols: 80 }, 'pty.rows'],
        [{ cols: 80.5, rows: 24 }, 'pty.cols'],
        [{ cols: 80, rows: 24, x: 1 }, 'pty.x'],
      ] as const) {
        const t = await open(gw.app, id, { cmd: 'true', pty });
        const err = t.message('error');
        assert.equal(err?.code, 400, JSON.stringify(t.messages));
        assert.equal(err?.field, field, JSON.stringify(err));
        assert.equal((await t.closed).code, 4400);
      }
      const t = await open(gw.app, id, { cmd: 'read line; echo done', stdin: true, pty: { cols: 80, rows: 24 } });
      t.send({ type: 'resize', cols: 120, rows: 5000 });
      await t.until(() => t.message('error') !== undefined, 'the resize error');
      assert.equal(t.message('error')?.field, 'rows');
      t.send(Buffer.from('\n'));
      assert.equal((await t.exit()).exitCode, 0);
      assert.match(t.output, /^done\r?$/m);
      // resize on a command without a terminal is refused too
      const plain = await open(gw.app, id, { cmd: 'read line', stdin: true });
      plain.send({ type: 'resize', cols: 100, rows: 30 });
      await plain.until(() => plain.message('error') !== undefined, 'the resize error');
      assert.equal(plain.message('error')?.code, 400);
      plain.send({ type: 'close_stdin' });
      await plain.exit();
    });
  });
});

describe('WebSocket exec on a terminal without the agent (runc exec fallback)', { skip, timeout: 120_000 }, () => {
  let gw: { app: App; stateDir: string };
  before(async () => {
    gw = await startGateway('10.78.45.0/24', 'off');
  });
  after(async () => {
    await gw?.app.close();
    if (gw) rmSync(gw.stateDir, { recursive: true, force: true });
  });

  it('refuses a pty start with 501 naming pty (never runs the command without a terminal)', async () => {
    await withSandbox(gw.app, async (id) => {
      const t = await open(gw.app, id, { cmd: 'touch /tmp/ran', pty: { cols: 80, rows: 24 } });
      const err = t.message('error');
      assert.equal(err?.code, 501, JSON.stringify(t.messages));
      assert.equal(err?.field, 'pty');
      assert.equal(t.message('started'), undefined);
      assert.equal((await t.closed).code, 4501);
      const check = await api<{ exitCode: number }>(gw.app, 'POST', `/sandboxes/${id}/exec`, { cmd: 'test ! -e /tmp/ran' });
      assert.equal(check.body.exitCode, 0, 'the command must not have run');
    });
  });
});
