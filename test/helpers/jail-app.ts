// An in-process gateway built around a Linux jail backend the test holds (so it can read the
// address pool, inject faults with `hooks.beforeStep`, and check leftovers by id), on a random
// loopback port, with its own state dir and its own sandbox subnet (so it never collides with
// another suite's addresses or routes).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Agent, request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { startApp, type App } from '../../src/app.ts';
import { createLinuxJailBackend, type LinuxJailBackend, type LinuxJailOptions } from '../../src/backends/jail/linux/index.ts';
import { configSchema } from '../../src/config.ts';
import { TEMPLATES_ROOT } from './gateway.ts';

export interface LogRecord {
  level: number;
  msg?: string;
  [k: string]: unknown;
}

export interface JailApp {
  app: App;
  backend: LinuxJailBackend;
  url: string;
  key: string;
  stateDir: string;
  subnet: string;
  /** Log records at `warn` and above (pino levels: 40 warn, 50 error, 60 fatal). */
  logs: LogRecord[];
  api<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: T; headers: Headers }>;
  /** Close this client's idle keep-alive connections (before counting file descriptors). */
  dropIdleConnections(): void;
  /** Stop the gateway (drain), close the backend, remove the state dir. */
  close(): Promise<void>;
}

export interface JailAppOptions {
  hooks?: LinuxJailOptions['hooks'];
  /** runc binary (e.g. a wrapper that fails on demand). */
  runc?: string;
  /** Default: a fresh dir under the OS tmpdir. */
  stateDir?: string;
  shardCount?: number;
  drainTimeoutS?: number;
}

/** A 10.78.N.0/24 that no address or route on this host uses (random N, so parallel suites differ). */
export function freeSubnet(): string {
  const used = execFileSync('ip', ['-4', '-o', 'addr']).toString() + execFileSync('ip', ['-4', 'route']).toString();
  for (let i = 0; i < 1000; i++) {
    const n = 100 + Math.floor(Math.random() * 150);
    if (!used.includes(`10.78.${n}.`)) return `10.78.${n}.0/24`;
  }
  throw new Error('no free 10.78.N.0/24 subnet');
}

/** A pino logger that keeps warn+ records in memory (and prints them when COPPICE_TEST_LOG is set). */
export function captureLogger(into: LogRecord[]): Logger {
  const echo = !!process.env.COPPICE_TEST_LOG;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        try {
          into.push(JSON.parse(line) as LogRecord);
        } catch {
          /* not JSON */
        }
        if (echo) process.stderr.write(line + '\n');
      }
      cb();
    },
  });
  return pino({ level: echo ? (process.env.COPPICE_TEST_LOG as string) : 'warn', base: { svc: 'coppice' } }, sink);
}

export async function startJailApp(opts: JailAppOptions = {}): Promise<JailApp> {
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'coppice-jailapp-'));
  const subnet = freeSubnet();
  const logs: LogRecord[] = [];
  const logger = captureLogger(logs);
  const config = configSchema.parse({
    listen: '127.0.0.1:0',
    stateDir,
    templatesRoot: TEMPLATES_ROOT,
    jailSubnet: subnet,
    drainTimeout: String(opts.drainTimeoutS ?? 60),
    logLevel: 'warn',
  });
  const backend = await createLinuxJailBackend({ stateDir, subnet, logger, hooks: opts.hooks, runc: opts.runc });
  const key = `k-${Math.random().toString(36).slice(2)}`;
  const app = await startApp(config, { logger, apiKey: key, backends: { jail: backend }, shardCount: opts.shardCount });
  for (let i = 0; i < 600 && app.gateway.lifecycle === 'starting'; i++) await new Promise((r) => setTimeout(r, 10));
  if (app.gateway.lifecycle !== 'serving') throw new Error(`gateway is ${app.gateway.lifecycle}`);

  // node:http with our own keep-alive agent (not fetch): the test can close idle connections before
  // counting file descriptors (fetch's pool keeps them ~64 s, per the server's keep-alive hint).
  const agent = new Agent({ keepAlive: true });
  const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: any; headers: Headers }>((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
      const u = new URL(app.url);
      const req = httpRequest(
        {
          agent,
          host: u.hostname,
          port: Number(u.port),
          method,
          path,
          headers: {
            authorization: `Bearer ${key}`,
            ...(data ? { 'content-type': 'application/json', 'content-length': String(data.length) } : {}),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              /* not JSON: keep the text */
            }
            const h = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(', ') : v);
            resolve({ status: res.statusCode ?? 0, body: parsed as any, headers: h });
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });

  let closed = false;
  return {
    app,
    backend,
    url: app.url,
    key,
    stateDir,
    subnet,
    logs,
    api,
    dropIdleConnections: () => agent.destroy(),
    async close() {
      if (closed) return;
      closed = true;
      agent.destroy();
      await app.close(); // drains: every live sandbox is destroyed, then the backend is closed
      if (!opts.stateDir) rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** Open file descriptors of this process. */
export function openFds(): number {
  // readdir holds one descriptor on /proc/self/fd itself while it lists; constant, so it cancels out.
  return readdirSync('/proc/self/fd').length;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
