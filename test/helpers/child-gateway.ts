// Run `coppice serve` as a real child process (for SIGINT and startup behaviour), on a random
// loopback port, with its own state dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEMPLATES_ROOT } from './gateway.ts';

export const BIN = join(import.meta.dirname, '../../bin/coppice.mjs');

export interface ChildGateway {
  proc: ChildProcess;
  url: string;
  key: string;
  stateDir: string;
  exit: Promise<number | null>;
  stderr(): string;
  api(method: string, path: string, body?: unknown): Promise<Response>;
}

export async function startChildGateway(args: string[] = [], env: Record<string, string> = {}, reuseStateDir?: string): Promise<ChildGateway> {
  const stateDir = reuseStateDir ?? mkdtempSync(join(tmpdir(), 'coppice-child-'));
  const key = `k-${Math.random().toString(36).slice(2)}`;
  const proc = spawn(
    process.execPath,
    [BIN, 'serve', '--listen', '127.0.0.1:0', '--state-dir', stateDir, '--templates-root', TEMPLATES_ROOT, '--log-level', 'warn', ...args],
    { env: { ...process.env, ...env, COPPICE_API_KEY: key }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    proc.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    proc.on('exit', () => reject(new Error(`gateway exited early: ${err}`)));
  });
  const api = (method: string, path: string, body?: unknown) =>
    fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  return { proc, url, key, stateDir, exit, stderr: () => err, api };
}

/** Poll /health until it answers 200; returns the statuses seen on the way. */
export async function waitHealthy(url: string, deadlineMs = 60_000): Promise<number[]> {
  const seen: number[] = [];
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    const s = await fetch(`${url}/health`).then((r) => r.status, () => 0);
    seen.push(s);
    if (s === 200) return seen;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`not healthy within ${deadlineMs} ms (saw ${[...new Set(seen)].join(',')})`);
}
