// The official `e2b` SDK's pty API (create, sendInput, resize, kill), unchanged, against an
// in-process gateway with real runc sandboxes whose init is coppice-agent. Needs root and the agent.
// Every test destroys what it created (and `after` sweeps whatever a failed test left).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CommandExitError, InvalidArgumentError, Sandbox } from 'e2b';
import { DEFAULT_AGENT } from '../../src/backends/jail/linux/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (runc sandboxes)' : !existsSync(DEFAULT_AGENT) ? 'needs coppice-agent (ops/setup.sh)' : false;

let gw: TestGateway;
let opts: { apiKey: string; apiUrl: string; sandboxUrl: string };
const created = new Set<string>();

before(async () => {
  if (skip) return;
  gw = await startTestGateway(['--jail-agent', 'on']);
  opts = { apiKey: gw.key, apiUrl: gw.url, sandboxUrl: gw.url };
});

after(async () => {
  for (const id of created) await Sandbox.kill(id, opts).catch(() => false);
  await gw?.close();
});

/** Wait until `pred` holds on the terminal's text so far; fail after `ms` showing it. */
async function until(text: () => string, pred: (s: string) => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred(text())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; terminal so far: ${JSON.stringify(text())}`);
    await sleep(25);
  }
}

test('pty.create + sendInput + resize + Ctrl-C + kill through the e2b SDK', { skip, timeout: 120_000 }, async () => {
  const sbx = await Sandbox.create('base', opts);
  created.add(sbx.sandboxId);
  try {
    let out = '';
    const dec = new TextDecoder();
    const term = await sbx.pty.create({ cols: 80, rows: 24, onData: (d: Uint8Array) => void (out += dec.decode(d, { stream: true })), timeoutMs: 0 });
    const text = () => out;
    const send = (s: string) => sbx.pty.sendInput(term.pid, new TextEncoder().encode(s));

    await send('tty; stty size; echo "term=$TERM"\n');
    await until(text, (s) => /\/dev\/pts\/\d+\r?\n/.test(s) && /^24 80\r?$/m.test(s) && /^term=xterm-256color\r?$/m.test(s), 'tty, stty size and TERM');

    await sbx.pty.resize(term.pid, { cols: 120, rows: 40 });
    await send('stty size\n');
    await until(text, (s) => /^40 120\r?$/m.test(s), 'the new size');

    // "sleeping-3" (not the echoed "$((1+2))") shows the line ran; then Ctrl-C as the byte 0x03.
    await send("sh -c 'echo sleeping-$((1+2)); exec sleep 30'\n");
    await until(text, (s) => s.includes('sleeping-3'), 'the job to start');
    await send('\x03');
    await send('echo alive-$((2+2))\n');
    // Were the sleep not interrupted, this would take 30 s: longer than the wait allows.
    await until(text, (s) => s.includes('alive-4'), 'the shell to run echo after Ctrl-C');

    // kill: true for the running terminal, and its wait() ends as a command killed by SIGKILL.
    assert.equal(await sbx.pty.kill(term.pid), true);
    await assert.rejects(term.wait(), (err: unknown) => err instanceof CommandExitError && /killed/.test(err.error ?? ''));
    assert.equal(await sbx.pty.kill(term.pid), false);

    // A bad size is refused, naming the field; a plain command has no terminal to resize.
    await assert.rejects(sbx.pty.create({ cols: 0, rows: 24, onData: () => undefined }), (err: unknown) => err instanceof InvalidArgumentError && /pty\.size\.cols/.test(String(err)));
    const plain = await sbx.commands.run('sleep 30', { background: true });
    await assert.rejects(sbx.pty.resize(plain.pid, { cols: 100, rows: 30 }), /no terminal/);
    await plain.kill();
  } finally {
    await sbx.kill();
    created.delete(sbx.sandboxId);
  }
});
