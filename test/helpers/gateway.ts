// Start a real gateway in-process (real runc backend, real HTTP) on a random loopback port,
// with its own state dir; and a tiny JSON client for it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApp, type App } from '../../src/app.ts';
import { parseServeArgs } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';

export const TEMPLATES_ROOT = process.env.COPPICE_TEST_TEMPLATES ?? '/var/lib/coppice/templates';

export interface TestGateway {
  app: App;
  url: string;
  key: string;
  stateDir: string;
  api<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: T }>;
  /** Destroy what is still live, stop the gateway, remove the state dir. */
  close(): Promise<void>;
}

export async function startTestGateway(extraArgs: string[] = []): Promise<TestGateway> {
  const stateDir = mkdtempSync(join(tmpdir(), 'coppice-test-'));
  const config = parseServeArgs(['--listen', '127.0.0.1:0', '--state-dir', stateDir, '--templates-root', TEMPLATES_ROOT, ...extraArgs]);
  const key = `test-${Math.random().toString(36).slice(2)}`;
  const app = await startApp(config, { logger: createLogger(process.env.COPPICE_TEST_LOG ?? 'silent'), apiKey: key });
  await waitServing(app);
  const api = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(app.url + path, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON: keep the text */
    }
    return { status: res.status, body: parsed as any };
  };
  return {
    app,
    url: app.url,
    key,
    stateDir,
    api,
    async close() {
      await app.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

async function waitServing(app: App): Promise<void> {
  for (let i = 0; i < 600 && app.gateway.lifecycle === 'starting'; i++) await new Promise((r) => setTimeout(r, 10));
  if (app.gateway.lifecycle !== 'serving') throw new Error(`gateway is ${app.gateway.lifecycle}`);
}
