// Assembles one gateway process: backends, the actor tree, the edge. Used by `coppice serve`
// and by tests that run a gateway in-process.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { Gateway } from './actors/gateway.ts';
import { reconcile } from './actors/reconcile.ts';
import { SandboxStore } from './actors/store.ts';
import type { Backends } from './actors/effects.ts';
import { createBhyveBackend } from './backends/bhyve/backend.ts';
import type { Backend } from './backends/types.ts';
import { splitListen, type Config } from './config.ts';
import { createPorts } from './ports/index.ts';
import { createE2b } from './e2b/index.ts';
import { createEdge, type Edge } from './edge/server.ts';
import { createKeyCheck } from './http/auth.ts';
import type { Logger } from './log.ts';

export interface App {
  gateway: Gateway;
  edge: Edge;
  url: string;
  apiKey: string;
  /** Graceful: drain (destroy sandboxes), then close the server and backends. */
  close(): Promise<void>;
}

export interface AppDeps {
  logger: Logger;
  apiKey: string;
  /** Tests and benches may inject backends; otherwise the platform's drivers are built. */
  backends?: Backends;
  shardCount?: number;
}

export async function platformJailBackend(config: Config, logger: Logger): Promise<Backend> {
  if (process.platform === 'linux') {
    const { createLinuxJailBackend } = await import('./backends/jail/linux/index.ts');
    return createLinuxJailBackend({
      stateDir: config.stateDir,
      subnet: config.jailSubnet,
      logger,
      hardening: config.jailHardening === 'on',
      agent: config.jailAgent ?? 'auto',
      uidBase: config.jailUidBase,
      diskMiB: config.diskMib,
      maxDiskMiB: config.maxDiskMib,
      allowHostPorts: (config.jailAllowHostPorts?.split(',') ?? []).map((p) => {
        const [proto, port] = p.split(':');
        return { proto: proto as 'tcp' | 'udp', port: Number(port) };
      }),
    });
  }
  if (process.platform === 'freebsd') {
    // Untested on real FreeBSD (no FreeBSD host in CI): see src/backends/jail/freebsd/.
    const { createFreebsdJailBackend } = await import('./backends/jail/freebsd/index.ts');
    return createFreebsdJailBackend({ subnet: config.jailSubnet, logger });
  }
  throw new Error(`no jail driver for platform ${process.platform}`);
}

/** COPPICE_METRICS_KEY, else --metrics-key-file, else none (then /metrics takes the API key only). */
export function resolveMetricsKey(config: Config, env = process.env): string | undefined {
  if (env.COPPICE_METRICS_KEY?.trim()) return env.COPPICE_METRICS_KEY.trim();
  if (!config.metricsKeyFile) return undefined;
  const key = readFileSync(config.metricsKeyFile, 'utf8').trim();
  if (!key) throw new Error(`--metrics-key-file ${config.metricsKeyFile} is empty`);
  return key;
}

/**
 * COPPICE_API_KEY, else --api-key-file, else `<state-dir>/api-key` (generated on first run). Keys an
 * operator set (any format, e.g. an older generated `cpc_...` key) are used as they are.
 */
export function resolveApiKey(config: Config, env = process.env): { key: string; source: string; generated?: boolean } {
  if (env.COPPICE_API_KEY) return { key: env.COPPICE_API_KEY.trim(), source: 'COPPICE_API_KEY' };
  if (config.apiKeyFile) {
    const key = readFileSync(config.apiKeyFile, 'utf8').trim();
    if (!key) throw new Error(`--api-key-file ${config.apiKeyFile} is empty`);
    return { key, source: config.apiKeyFile };
  }
  const file = join(config.stateDir, 'api-key');
  if (existsSync(file)) return { key: readFileSync(file, 'utf8').trim(), source: file };
  mkdirSync(config.stateDir, { recursive: true });
  // E2B's key format (`e2b_` + hex): the E2B SDKs that validate keys client-side accept it.
  const key = `e2b_${randomBytes(20).toString('hex')}`;
  writeFileSync(file, key + '\n', { mode: 0o600 });
  return { key, source: `${file} (generated)`, generated: true };
}

/**
 * The seed's startup warm: with --bhyve-pool-size N, warm the first bhyve template the registry
 * lists and stay not-ready until pool-ctl returns. A failed warm is logged and the gateway serves
 * anyway (jail sandboxes work; the pool can be warmed later with POST /pool/:name/warm).
 */
async function startupWarm(gateway: Gateway, config: Config, logger: Logger): Promise<void> {
  if (config.bhyvePoolSize <= 0) return;
  // The seed's "first bhyve template": the first template whose backend keeps its own pool.
  const first = gateway.templates().find((t) => gateway.capabilities(t.backend).pool === 'external');
  if (!first) {
    logger.warn({ bhyveTemplatesRoot: config.bhyveTemplatesRoot }, '--bhyve-pool-size given but no bhyve template found');
    return;
  }
  logger.info({ template: first.name, count: config.bhyvePoolSize }, 'startup warm');
  try {
    const r = await gateway.warmPool(first.name, config.bhyvePoolSize, (line) => logger.info({ template: first.name, line }, 'warm progress'));
    logger.info({ ...r }, 'startup warm done');
  } catch (err) {
    logger.error({ template: first.name, err: (err as Error).message }, 'startup warm failed; serving without a warm pool');
  }
}

/**
 * Fail before anything is set up (nft table, backends, actors) when the address cannot be had:
 * bind it once and let go. The real listen below can still lose a race; it cleans up then.
 */
async function probeListen(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/** The listen address could not be had (in use, not ours, no permission): `err.code` says which. */
export function isListenError(err: unknown): err is NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException;
  return e?.syscall === 'listen' || e?.syscall === 'bind' || ['EADDRINUSE', 'EADDRNOTAVAIL', 'EACCES'].includes(e?.code ?? '');
}

export async function startApp(config: Config, deps: AppDeps): Promise<App> {
  const { logger } = deps;
  const { host, port } = splitListen(config.listen);
  await probeListen(host, port);
  mkdirSync(config.stateDir, { recursive: true });
  // The bhyve backend exists only when the operator opts in (the seed's Option<Arc<dyn Backend>>).
  let gatewayRef: Gateway | undefined;
  const backends: Backends = deps.backends ?? {
    jail: await platformJailBackend(config, logger),
    ...(config.bhyveTemplatesRoot
      ? {
          bhyve: createBhyveBackend({
            poolCtl: {
              path: config.poolCtl,
              env: { COPPICE_BHYVE_TEMPLATES_ROOT: config.bhyveTemplatesRoot, COPPICE_POOL_KEY: config.sshKey },
            },
            keyPath: config.sshKey,
            logger,
            onCheckout: (template, ns) => gatewayRef?.recordCheckout(template, ns),
          }),
        }
      : {}),
  };
  const store = new SandboxStore(config.stateDir);
  const gateway = new Gateway({
    backends,
    roots: { templatesRoot: config.templatesRoot, bhyveTemplatesRoot: config.bhyveTemplatesRoot },
    logger,
    shardCount: deps.shardCount,
    drainDeadlineMs: config.drainTimeout * 1000,
    jailPool: { size: config.jailPoolSize, templates: config.jailPoolTemplates ? config.jailPoolTemplates.split(',') : null },
    store,
    maxSandboxes: config.maxSandboxes,
    ceilings: { memoryMiB: config.maxMemoryMib, cpus: config.maxCpus, pids: config.maxPids, timeoutS: config.maxTimeout },
    memoryBudgetMiB: config.memoryBudgetMib ?? Math.floor((4 * totalmem()) / 2 ** 20),
    maxConcurrentCreates: config.maxConcurrentCreates,
    createQueue: config.createQueue,
    startup: async () => {
      const r = await reconcile(store, backends, gatewayRef!.actor, logger);
      if (r.adopted.length + r.orphanRecords.length + r.orphanSandboxes.length > 0) logger.info({ ...r }, 'reconciled');
      await startupWarm(gatewayRef!, config, logger);
    },
  });
  gatewayRef = gateway;
  gateway.start();

  // E2B SDK compatibility (docs/e2b.md) is a surface mounted on the edge, not part of it.
  const e2b = createE2b(gateway, { apiKeys: [deps.apiKey], keyOk: createKeyCheck([deps.apiKey]), defaultDiskMiB: (kind) => gateway.capabilities(kind).defaultDiskMiB ?? 0, domain: config.domain, bodyLimit: config.bodyLimit });
  const metricsKey = resolveMetricsKey(config);
  // Sandbox ports first: a request naming a port (host or E2b-Sandbox-Port) is never envd's.
  const ports = createPorts(gateway, { domain: config.domain, envd: e2b, keyOk: createKeyCheck([deps.apiKey]) });
  const edge = createEdge(gateway, { apiKeys: [deps.apiKey], metricsKeys: metricsKey ? [metricsKey] : [], bodyLimit: config.bodyLimit, mounts: [ports, e2b] });
  try {
    await new Promise<void>((resolve, reject) => {
      edge.server.once('error', reject);
      edge.server.listen(port, host, () => resolve());
    });
  } catch (err) {
    // Lost the address after the probe: undo what was set up (actors, backends, the nft table).
    gateway.sigint();
    await gateway.stopped;
    for (const b of Object.values(backends)) await b?.close().catch(() => undefined);
    throw err;
  }
  const addr = edge.server.address() as AddressInfo;
  const url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;

  let closing: Promise<void> | null = null;
  const shutdown = async () => {
    await gateway.stopped;
    const closed = new Promise<void>((r) => edge.server.close(() => r()));
    edge.server.closeAllConnections();
    await closed;
    for (const b of Object.values(backends)) {
      // Drained: anything still named like a sandbox of ours is a leak (a record or actor was missing).
      const swept = await b?.sweep?.().catch((err: Error) => ({ swept: [], left: [err.message] }));
      if (swept && swept.swept.length + swept.left.length > 0) logger.warn({ ...swept }, 'drain sweep removed leftovers');
      await b?.close();
    }
  };
  void gateway.stopped.then(() => {
    closing ??= shutdown();
  });

  return {
    gateway,
    edge,
    url,
    apiKey: deps.apiKey,
    close() {
      gateway.sigint();
      closing ??= shutdown();
      return closing;
    },
  };
}
