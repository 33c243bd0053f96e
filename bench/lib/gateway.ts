// A gateway running in the bench process (startApp, as the tests do): real edge, real actor tree,
// real backends unless injected; its own state dir, API key and jail subnet; loopback listener.
import { mkdtempSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backends } from '../../src/actors/effects.ts';
import { startApp, type App } from '../../src/app.ts';
import { findLeftovers } from '../../src/backends/jail/linux/leftovers.ts';
import { parseServeArgs, type Config } from '../../src/config.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { onCleanup, record, removeDirSafely } from './cleanup.ts';
import { freeSubnet, range, sleep } from './host.ts';
import { apiClient, type Api } from './http.ts';

export interface BenchGateway {
  app: App;
  url: string;
  key: string;
  stateDir: string;
  subnet: string;
  api: Api;
  /** Host objects any of `ids` still has (runc, mounts, netns, veth, cgroups, dirs). */
  leftovers(ids: string[]): Promise<string[]>;
  close(): Promise<void>;
}

export interface BenchGatewayOptions {
  templatesRoot: string;
  /** Extra `coppice serve` flags. */
  args?: string[];
  backends?: Backends;
  /** Build the backends from the parsed config (e.g. a bhyve backend with its own pool-ctl subnet). */
  makeBackends?: (config: Config, logger: Logger) => Promise<Backends>;
}

export async function startBenchGateway(opts: BenchGatewayOptions): Promise<BenchGateway> {
  const stateDir = mkdtempSync(join(tmpdir(), 'coppice-bench-gw-'));
  const unrecord = record({ kind: 'jail-state', dir: stateDir });
  const subnet = freeSubnet(range(200, 219, (i) => `10.78.${i}.0/24`));
  const config = parseServeArgs([
    '--listen', '127.0.0.1:0',
    '--state-dir', stateDir,
    '--templates-root', opts.templatesRoot,
    '--jail-subnet', subnet,
    '--drain-timeout', '120',
    ...(opts.args ?? []),
  ]);
  const key = `bench-${randomBytes(12).toString('hex')}`;
  const logger = createLogger(process.env.COPPICE_BENCH_LOG ?? 'silent');
  const backends = opts.backends ?? (opts.makeBackends ? await opts.makeBackends(config, logger) : undefined);
  let app: App;
  try {
    app = await startApp(config, { logger, apiKey: key, backends });
  } catch (err) {
    if (removeDirSafely(stateDir).length === 0) unrecord();
    throw err;
  }
  for (let i = 0; i < 60_000 && app.gateway.lifecycle === 'starting'; i += 10) await sleep(10);
  if (app.gateway.lifecycle !== 'serving') throw new Error(`bench gateway is ${app.gateway.lifecycle}`);
  const client = apiClient(app.url, key);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    client.close();
    await app.close(); // drains: every live sandbox is destroyed by its actor
    const left = removeDirSafely(stateDir);
    if (left.length) throw new Error(`gateway state dir ${stateDir} still has ${left.join(', ')}`);
    unrecord();
  };
  const unregister = onCleanup(`gateway ${stateDir}`, close);
  return {
    app,
    url: app.url,
    key,
    stateDir,
    subnet,
    api: client.api,
    leftovers: (ids) => findLeftovers(ids, { stateDir }),
    close: async () => {
      unregister();
      await close();
    },
  };
}
