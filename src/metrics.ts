// prom-client metrics on a registry of our own (never the global one), so several gateways can
// live in one process (tests) without clashing.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface PoolGaugeSource {
  template: string;
  backend: string;
  /** The substrate keeps this pool (bhyve's pool-ctl): the seed's coppice_bhyve_pool_* gauges. */
  external: boolean;
  available: number;
  inUse: number;
}

export interface Metrics {
  registry: Registry;
  /** The seed's pair: their ratio is the mean bhyve checkout time in ns. */
  bhyveCheckoutNsSum: Counter;
  bhyveCheckoutsTotal: Counter;
  bhyveCheckoutSeconds: Histogram<'template'>;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpSeconds: Histogram<'method' | 'route' | 'status'>;
  /** Creates by backend and outcome (ok, pool, failed, refused); failures also by error code. */
  createsTotal: Counter<'backend' | 'outcome'>;
  createFailures: Counter<'backend' | 'code'>;
  wsExecSessions: Counter<'mode'>;
  wsExecActive: Gauge;
  wsExecBytes: Counter<'direction'>;
  createSeconds: Histogram<'backend' | 'outcome'>;
  execSeconds: Histogram<'backend'>;
  sandboxes: Gauge<'state' | 'backend'>;
}

export function createMetrics(countSandboxes: () => Map<string, number>, pools: () => PoolGaugeSource[] = () => []): Metrics {
  const registry = new Registry();
  // prom-client's own names (process_cpu_seconds_total, nodejs_heap_...) under our prefix.
  collectDefaultMetrics({ register: registry, prefix: 'coppice_' });
  const httpRequests = new Counter({
    name: 'coppice_http_requests_total',
    help: 'HTTP requests by route template, method and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const httpSeconds = new Histogram({
    name: 'coppice_http_request_duration_seconds',
    help: 'HTTP request duration by route template, method and status (WebSocket upgrades excluded)',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const createsTotal = new Counter({
    name: 'coppice_sandbox_creates_total',
    help: 'Sandbox creates by backend and outcome (ok = cold, pool = warm hit, failed, refused)',
    labelNames: ['backend', 'outcome'] as const,
    registers: [registry],
  });
  const createFailures = new Counter({
    name: 'coppice_sandbox_create_failures_total',
    help: 'Failed or refused sandbox creates by backend and error code',
    labelNames: ['backend', 'code'] as const,
    registers: [registry],
  });
  const wsExecSessions = new Counter({
    name: 'coppice_ws_exec_sessions_total',
    help: 'Streaming exec WebSocket sessions bound to a command, by mode (start, attach)',
    labelNames: ['mode'] as const,
    registers: [registry],
  });
  const wsExecActive = new Gauge({
    name: 'coppice_ws_exec_sessions_active',
    help: 'Streaming exec WebSocket sessions open now',
    registers: [registry],
  });
  const wsExecBytes = new Counter({
    name: 'coppice_ws_exec_bytes_total',
    help: 'Bytes relayed by streaming exec sessions (out = command output to clients, in = stdin)',
    labelNames: ['direction'] as const,
    registers: [registry],
  });
  const createSeconds = new Histogram({
    name: 'coppice_sandbox_create_seconds',
    help: 'Time from create request to a ready sandbox (or failure)',
    labelNames: ['backend', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30],
    registers: [registry],
  });
  const execSeconds = new Histogram({
    name: 'coppice_exec_seconds',
    help: 'Buffered exec duration, request to exit',
    labelNames: ['backend'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [registry],
  });
  const sandboxes = new Gauge({
    name: 'coppice_sandboxes',
    help: 'Live sandboxes by lifecycle state and backend',
    labelNames: ['state', 'backend'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of countSandboxes()) {
        const [state, backend] = key.split('|');
        this.set({ state, backend }, n);
      }
    },
  });
  const bhyveCheckoutNsSum = new Counter({
    name: 'coppice_bhyve_checkout_ns_sum',
    help: 'Total wall time of pool-ctl checkouts, in nanoseconds (divide by coppice_bhyve_checkouts_total)',
    registers: [registry],
  });
  const bhyveCheckoutsTotal = new Counter({
    name: 'coppice_bhyve_checkouts_total',
    help: 'Successful pool-ctl checkouts',
    registers: [registry],
  });
  const bhyveCheckoutSeconds = new Histogram({
    name: 'coppice_bhyve_checkout_seconds',
    help: 'pool-ctl checkout latency',
    labelNames: ['template'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5],
    registers: [registry],
  });
  // Refreshed every 10 s by each pool actor from `pool-ctl list --json`; read at scrape time.
  for (const [name, field, help] of [
    ['coppice_bhyve_pool_available', 'available', 'Ready (stopped) guests per bhyve template'],
    ['coppice_bhyve_pool_in_use', 'inUse', 'Checked-out guests per bhyve template'],
  ] as const) {
    new Gauge({
      name,
      help,
      labelNames: ['template'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const p of pools()) if (p.external) this.set({ template: p.template }, p[field]);
      },
    });
  }
  return {
    registry,
    httpRequests,
    httpSeconds,
    createsTotal,
    createFailures,
    wsExecSessions,
    wsExecActive,
    wsExecBytes,
    createSeconds,     execSeconds,
    sandboxes,
    bhyveCheckoutNsSum,
    bhyveCheckoutsTotal,
    bhyveCheckoutSeconds,
  };
}
