// `coppice serve --help`: every flag parseServeArgs takes (src/config.ts FLAGS), each with its
// words here and its default from the schema itself, so help and parser cannot disagree on which
// flags exist or what they default to. A flag added to config.ts without words here still shows
// (with its default); test/unit/cli-help.test.ts insists on the words.
import { configSchema, FLAGS } from '../config.ts';

export const SERVE_FLAG_HELP: Record<string, { arg: string; help: string }> = {
  listen: { arg: 'HOST:PORT', help: 'address to serve the API on' },
  'templates-root': { arg: 'DIR', help: 'jail templates: every DIR/<name>-template directory' },
  'bhyve-templates-root': { arg: 'DIR', help: 'bhyve templates: every DIR/<name>.img file (unset: no bhyve)' },
  'bhyve-pool-size': { arg: 'N', help: 'at startup, warm N guests of the first bhyve template (not ready until done)' },
  'jail-pool-size': { arg: 'N', help: 'keep N frozen sandboxes ready per jail template' },
  'jail-pool-templates': { arg: 'LIST', help: 'which jail templates get a pool (unset: all)' },
  'state-dir': { arg: 'DIR', help: "sandboxes' writable layers, the generated API key" },
  'api-key-file': { arg: 'FILE', help: 'the API key (else COPPICE_API_KEY, else generated in the state dir)' },
  'metrics-key-file': { arg: 'FILE', help: 'a key that may read /metrics only, for scrapers (else COPPICE_METRICS_KEY)' },
  'jail-subnet': { arg: 'CIDR', help: 'jail sandbox addresses (.1 is the host side)' },
  'pool-ctl': { arg: 'PATH', help: 'bhyve pool-ctl program' },
  'ssh-key': { arg: 'PATH', help: "bhyve guests' SSH key" },
  'drain-timeout': { arg: 'SECONDS', help: 'how long SIGINT may take to drain' },
  'max-sandboxes': { arg: 'N', help: 'live sandboxes at most (429 beyond)' },
  'max-memory-mib': { arg: 'N', help: 'ceiling on limits.memoryMiB per create (400 beyond)' },
  'max-cpus': { arg: 'N', help: 'ceiling on limits.cpus' },
  'max-pids': { arg: 'N', help: 'ceiling on limits.pids' },
  'jail-agent': { arg: 'on|off', help: "coppice-agent as every jail sandbox's init, exec through it (default: on when installed)" },
  'max-timeout': { arg: 'SECONDS', help: "ceiling on a sandbox's timeout" },
  'memory-budget-mib': { arg: 'N', help: "sum of every sandbox's memory limit (default 4x host RAM; 429 beyond)" },
  domain: { arg: 'D', help: 'sandbox ports as <port>-<id>.D through the gateway (E2B getHost)' },
  'disk-mib': { arg: 'N', help: 'disk quota of a jail sandbox when the create names none' },
  'max-disk-mib': { arg: 'N', help: 'ceiling on limits.diskMiB' },
  'jail-uid-base': { arg: 'N', help: 'first host uid of the per-sandbox user-namespace ranges' },
  'jail-hardening': { arg: 'on|off', help: 'user namespaces + seccomp (off only to benchmark the cost)' },
  'jail-allow-host-ports': { arg: 'LIST', help: 'host services sandboxes may reach, e.g. tcp:8080,udp:53 (unset: none)' },
  'max-concurrent-creates': { arg: 'N', help: 'creates at once' },
  'create-queue': { arg: 'N', help: 'creates waiting for a turn (429 beyond)' },
  'body-limit': { arg: 'BYTES', help: 'largest request body (create/connect/fork/timeout: 1 MiB)' },
  'log-level': { arg: 'LEVEL', help: 'pino level: fatal, error, warn, info, debug, trace, silent' },
};

export const serveFlagNames = (): string[] => Object.keys(FLAGS);

/** The schema's default of each config key (only keys that have one). */
function defaults(): Record<string, unknown> {
  const r = configSchema.safeParse({});
  return r.success ? (r.data as Record<string, unknown>) : {};
}

export function serveUsage(): string {
  const d = defaults();
  const rows = Object.entries(FLAGS).map(([flag, key]) => {
    const words = SERVE_FLAG_HELP[flag];
    const def = d[key];
    const label = `--${flag} ${words?.arg ?? 'VALUE'}`;
    return [label, `${words?.help ?? ''}${def !== undefined ? `${words ? ' ' : ''}(default ${def})` : ''}`] as const;
  });
  const w = Math.max(...rows.map(([l]) => l.length));
  return (
    'usage: coppice serve [flags]\n\n' +
    '  Run the gateway until SIGINT/SIGTERM (the first drains: 503 to new work, sandboxes\n' +
    '  destroyed; a second exits at once). A bad flag, or an address already in use, exits 2.\n\n' +
    'flags:\n' +
    rows.map(([l, h]) => `  ${l.padEnd(w)}  ${h}`).join('\n') +
    `\n  ${'-h, --help'.padEnd(w)}  this help\n`
  );
}
