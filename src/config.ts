// `coppice serve` flags: parsed by node's parseArgs, validated by zod. A bad flag is a clear
// message and exit code 2 (see cli/main.ts).
import { parseArgs } from 'node:util';
import { z } from 'zod';

const cidr = z
  .string()
  .regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/, 'must be an IPv4 CIDR like 10.78.0.0/24')
  .refine((s) => {
    const [addr, bits] = s.split('/');
    return addr!.split('.').every((o) => Number(o) <= 255) && Number(bits) >= 16 && Number(bits) <= 30;
  }, 'octets must be <= 255 and the prefix between /16 and /30');

const listen = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/, 'must be HOST:PORT')
  .refine((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port must be <= 65535');

/** A whole number written in decimal ("" and "1e3" are errors, unlike z.coerce). */
const count = z.string().regex(/^\d+$/, 'must be a whole number').transform(Number);

const absPath = z.string().min(1).startsWith('/', 'must be an absolute path');

export const configSchema = z
  .object({
    listen: listen.default('127.0.0.1:3000'),
    templatesRoot: absPath.default('/var/lib/coppice/templates'),
    bhyveTemplatesRoot: absPath.optional(),
    jailPoolSize: count.pipe(z.number().int().min(0).max(1000)).default('0'),
    jailPoolTemplates: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*(,[A-Za-z0-9][A-Za-z0-9._-]*)*$/, 'must be a comma-separated list of template names')
      .optional(),
    bhyvePoolSize: count.pipe(z.number().int().min(0).max(1000)).default('0'),
    stateDir: absPath.default('/var/lib/coppice'),
    apiKeyFile: absPath.optional(),
    /** A file holding a key that may read /metrics only (or COPPICE_METRICS_KEY). */
    metricsKeyFile: absPath.optional(),
    jailSubnet: cidr.default('10.78.0.0/24'),
    poolCtl: absPath.default('/usr/local/sbin/coppice-bhyve-pool-ctl.sh'),
    sshKey: absPath.default('/root/coppice-signing/pool-key'),
    /** Host services sandboxes may reach anyway, e.g. `tcp:8080,udp:53` (default: none). */
    jailAllowHostPorts: z
      .string()
      .regex(/^(tcp|udp):\d{1,5}(,(tcp|udp):\d{1,5})*$/, 'must be a list like tcp:8080,udp:53')
      .refine((v) => v.split(',').every((p) => Number(p.split(':')[1]) >= 1 && Number(p.split(':')[1]) <= 65535), 'ports must be 1-65535')
      .optional(),
    /** Disk quota of a sandbox's writable layer when a create names none, and the ceiling (MiB). */
    diskMib: count.pipe(z.number().int().min(16).max(16 * 1024 * 1024)).default('2048'),
    maxDiskMib: count.pipe(z.number().int().min(16).max(16 * 1024 * 1024)).default('65536'),
    /** First host uid of the per-sandbox user namespace ranges (65,536 ids each). */
    jailUidBase: count.pipe(z.number().int().min(65_536).max(4_294_967_294 - 65_536)).default('1000000000'),
    /** off: no user namespace / seccomp (for benchmarks comparing the cost only). */
    jailHardening: z.enum(['on', 'off']).default('on'),
    /** coppice-agent as the jail sandboxes' init + exec channel; absent: on when installed (docs/agent.md). */
    jailAgent: z.enum(['on', 'off']).optional(),
    /** Operator ceilings on what one create may ask for (400 naming the field beyond). */
    maxMemoryMib: count.pipe(z.number().int().min(16).max(16 * 1024 * 1024)).default('8192'),
    maxCpus: count.pipe(z.number().int().min(1).max(1024)).default('4'),
    maxPids: count.pipe(z.number().int().min(8).max(4_194_304)).default('4096'),
    /** Sum of live sandboxes' memory limits (MiB); default 4x host RAM (limits are ceilings, rarely all used). */
    memoryBudgetMib: count.pipe(z.number().int().min(16).max(1024 * 1024 * 1024)).optional(),
    /** Seconds. */
    maxTimeout: count.pipe(z.number().int().min(1).max(30 * 24 * 3600)).default('86400'),
    maxSandboxes: count.pipe(z.number().int().min(1).max(1_000_000)).default('500'),
    maxConcurrentCreates: count.pipe(z.number().int().min(1).max(10_000)).default('32'),
    createQueue: count.pipe(z.number().int().min(0).max(100_000)).default('128'),
    bodyLimit: count.pipe(z.number().int().min(1024).max(1024 * 1024 * 1024)).default(String(32 * 1024 * 1024)),
    drainTimeout: count.pipe(z.number().int().min(1).max(3600)).default('30'),
    /** Host-based routing to sandbox ports: `<port>-<sandboxID>.<domain>` (E2B's getHost). */
    domain: z
      .string()
      .regex(/^(?=.{1,200}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/, 'must be a DNS name like localhost or sandboxes.example.com')
      .optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict()
  .refine((c) => c.diskMib <= c.maxDiskMib, { message: 'must not exceed --max-disk-mib', path: ['diskMib'] });

export type Config = z.infer<typeof configSchema>;

export const FLAGS = {
  listen: 'listen',
  'templates-root': 'templatesRoot',
  'bhyve-templates-root': 'bhyveTemplatesRoot',
  'bhyve-pool-size': 'bhyvePoolSize',
  'jail-pool-size': 'jailPoolSize',
  'jail-pool-templates': 'jailPoolTemplates',
  'state-dir': 'stateDir',
  'api-key-file': 'apiKeyFile',
  'metrics-key-file': 'metricsKeyFile',
  'jail-subnet': 'jailSubnet',
  'pool-ctl': 'poolCtl',
  'ssh-key': 'sshKey',
  'drain-timeout': 'drainTimeout',
  'max-sandboxes': 'maxSandboxes',
  'max-memory-mib': 'maxMemoryMib',
  'max-cpus': 'maxCpus',
  'max-pids': 'maxPids',
  'max-timeout': 'maxTimeout',
  'memory-budget-mib': 'memoryBudgetMib',
  'disk-mib': 'diskMib',
  'max-disk-mib': 'maxDiskMib',
  'jail-uid-base': 'jailUidBase',
  'jail-hardening': 'jailHardening',
  'jail-agent': 'jailAgent',
  'jail-allow-host-ports': 'jailAllowHostPorts',
  'max-concurrent-creates': 'maxConcurrentCreates',
  'create-queue': 'createQueue',
  'body-limit': 'bodyLimit',
  'log-level': 'logLevel',
  domain: 'domain',
} as const;

export class ConfigError extends Error {}

export function parseServeArgs(argv: string[]): Config {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: Object.fromEntries(Object.keys(FLAGS).map((f) => [f, { type: 'string' as const }])),
      strict: true,
      allowPositionals: false,
    }) as { values: Record<string, string | undefined> });
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const raw: Record<string, string> = {};
  for (const [flag, key] of Object.entries(FLAGS)) if (values[flag] !== undefined) raw[key] = values[flag]!;
  const r = configSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const key = String(issue.path[0]);
    const flag = Object.entries(FLAGS).find(([, k]) => k === key)?.[0] ?? key;
    throw new ConfigError(`--${flag}: ${issue.message}`);
  }
  return r.data;
}

export function splitListen(l: string): { host: string; port: number } {
  const i = l.lastIndexOf(':');
  return { host: l.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(l.slice(i + 1)) };
}
