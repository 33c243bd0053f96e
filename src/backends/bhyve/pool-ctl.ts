// Client for the external pool-ctl program (notes/pool-ctl-contract.md). The gateway never touches
// a hypervisor: it runs this program, and every line it reads back is validated with zod, because
// the program is a shell script on someone else's host and may print anything.
import { parseCidr as parseIpv4Cidr, tryIpToInt } from '../ipv4.ts';
import { spawn } from 'node:child_process';
import { z } from 'zod';
import { backendFailed, CoppiceError, timeout } from '../../errors.ts';

export const DEFAULT_POOL_CTL = '/usr/local/sbin/coppice-bhyve-pool-ctl.sh';
/** checkout's exit status for "no ready guest" (a contract refinement both implementations follow). */
export const EXIT_POOL_EMPTY = 3;

export interface PoolCtlOptions {
  /** Path of the pool-ctl program. */
  path?: string;
  /** Subnet guests' addresses must fall in (CIDR). */
  subnet?: string;
  /** Extra environment for the program (state dir, subnet, bridge...). */
  env?: Record<string, string>;
  /** Per-verb deadlines in ms; the program (and everything it started in its process group) is killed when one passes. */
  timeouts?: Partial<Record<Verb, number>>;
}

export type Verb = 'warm' | 'checkout' | 'release' | 'pause' | 'resume' | 'drain' | 'list';

const DEFAULT_TIMEOUTS: Record<Verb, number> = {
  warm: 600_000, checkout: 15_000, release: 30_000, pause: 10_000, resume: 10_000, drain: 120_000, list: 10_000,
};

const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
const vmName = z.string().regex(NAME, 'vm name');
const ipv4 = z.string().regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, 'IPv4 address');

export const CheckoutSchema = z.object({ vm: vmName, ip: ipv4, template: z.string().regex(NAME) }).strict();
export const WarmSchema = z.object({ template: z.string().regex(NAME), available: z.number().int().nonnegative() }).strict();
export const Accel = z.enum(['kvm', 'tcg']);
export const VmStateSchema = z.enum(['available', 'booting', 'in_use', 'paused', 'dead']);
export const ListSchema = z.object({
  templates: z.record(z.string().regex(NAME), z.object({
    available: z.number().int().nonnegative(),
    in_use: z.number().int().nonnegative(),
  }).strict()),
  vms: z.array(z.object({
    vm: vmName,
    template: z.string().regex(NAME),
    ip: ipv4,
    state: VmStateSchema,
    owner: z.string().optional(),
    /** microVM pool-ctl: how this guest runs (kvm, or tcg where KVM cannot boot a guest). */
    accel: Accel.optional(),
  }).strict()),
  /** microVM pool-ctl: the acceleration chosen by its probe at warm time. */
  accel: Accel.optional(),
}).strict();

export type Checkout = z.infer<typeof CheckoutSchema>;
export type PoolList = z.infer<typeof ListSchema>;

function parseCidr(cidr: string): { net: number; mask: number } {
  try {
    const c = parseIpv4Cidr(cidr);
    return { net: c.network, mask: c.mask };
  } catch {
    throw new Error(`invalid subnet ${JSON.stringify(cidr)}`);
  }
}

const ipToInt = tryIpToInt;

/** The one thing a running program hands back. */
interface RunResult { stdout: string; stderr: string }

export class PoolCtlClient {
  readonly path: string;
  readonly subnet: string;
  private readonly net: { net: number; mask: number };
  private readonly env: Record<string, string>;
  private readonly timeouts: Record<Verb, number>;

  constructor(opts: PoolCtlOptions = {}) {
    this.path = opts.path ?? DEFAULT_POOL_CTL;
    this.subnet = opts.subnet ?? '10.77.0.0/24';
    this.net = parseCidr(this.subnet);
    this.env = opts.env ?? {};
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  }

  /** Take one ready guest. `owner` (the sandbox id) is recorded so a crashed caller's guest can be found again. */
  async checkout(template: string, opts: { owner?: string; signal?: AbortSignal } = {}): Promise<Checkout> {
    const args = [template, ...(opts.owner ? ['--owner', opts.owner] : [])];
    const r = await this.run('checkout', args, { signal: opts.signal });
    const co = this.parse('checkout', CheckoutSchema, lastLine(r.stdout), r);
    if (co.template !== template) throw this.bad('checkout', `returned template ${co.template}, asked for ${template}`, r);
    const ip = ipToInt(co.ip);
    if (ip === null || ((ip & this.net.mask) >>> 0) !== this.net.net) {
      throw this.bad('checkout', `guest address ${co.ip} is not inside ${this.subnet}`, r);
    }
    return co;
  }

  async release(vm: string, signal?: AbortSignal): Promise<void> {
    await this.run('release', [checkName(vm)], { signal });
  }

  async pause(vm: string, signal?: AbortSignal): Promise<void> {
    await this.run('pause', [checkName(vm)], { signal });
  }

  async resume(vm: string, signal?: AbortSignal): Promise<void> {
    await this.run('resume', [checkName(vm)], { signal });
  }

  /** Boot guests until `count` are ready; stderr progress lines are passed to `onProgress` as they come. */
  async warm(template: string, count: number, onProgress?: (line: string) => void, signal?: AbortSignal): Promise<{ template: string; available: number }> {
    if (!Number.isInteger(count) || count < 0) throw backendFailed(`pool-ctl warm ${template}: count must be a non-negative integer`);
    const r = await this.run('warm', [template, '--count', String(count)], { signal, onStderrLine: onProgress });
    return this.parse('warm', WarmSchema, lastLine(r.stdout), r);
  }

  async drain(template: string, signal?: AbortSignal): Promise<void> {
    await this.run('drain', [template], { signal });
  }

  async list(signal?: AbortSignal): Promise<PoolList> {
    const r = await this.run('list', ['--json'], { signal });
    return this.parse('list', ListSchema, lastLine(r.stdout), r);
  }

  private parse<T>(verb: Verb, schema: z.ZodType<T>, line: string, r: RunResult): T {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw this.bad(verb, `printed ${line ? JSON.stringify(line.slice(0, 200)) : 'nothing'}, not JSON`, r);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw this.bad(verb, `printed JSON that breaks the contract (${issue.path.join('.') || '<root>'}: ${issue.message})`, r);
    }
    return parsed.data;
  }

  private bad(verb: Verb, why: string, r: RunResult): CoppiceError {
    return backendFailed(`pool-ctl ${verb} ${why}${stderrTail(r.stderr)}`);
  }

  /**
   * Run one verb. spawn (execFile's sibling: argv array, no shell) in its own process group, so a
   * hung script is killed together with whatever it started (ssh probes, sleeps), and its stdout
   * pipe really closes.
   */
  private run(verb: Verb, args: string[], o: { signal?: AbortSignal; onStderrLine?: (l: string) => void }): Promise<RunResult> {
    const limit = this.timeouts[verb];
    return new Promise<RunResult>((resolve, reject) => {
      if (o.signal?.aborted) return reject(backendFailed(`pool-ctl ${verb}: aborted before start`));
      const child = spawn(this.path, [verb, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
        env: { ...process.env, ...this.env },
      });
      let stdout = '';
      let stderr = '';
      let partial = '';
      let why: CoppiceError | null = null;
      const killGroup = (err: CoppiceError) => {
        why ??= err;
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch { /* already gone */ }
      };
      const timer = setTimeout(() => killGroup(timeout(`pool-ctl ${verb} ${args[0] ?? ''} timed out after ${limit} ms (killed)`)), limit);
      const onAbort = () => killGroup(backendFailed(`pool-ctl ${verb} ${args[0] ?? ''}: aborted (killed)`));
      o.signal?.addEventListener('abort', onAbort, { once: true });
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (stdout.length < 1 << 20) stdout += d; // a runaway script must not eat the gateway's memory
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr = (stderr + d).slice(-16_384);
        if (!o.onStderrLine) return;
        const lines = (partial + d).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) if (l) o.onStderrLine(l);
      });
      child.on('error', (err) => {
        why ??= backendFailed(`pool-ctl ${verb}: cannot run ${this.path}: ${err.message}`, err);
      });
      child.on('close', (code, sig) => {
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        if (partial && o.onStderrLine) o.onStderrLine(partial);
        const tail = stderrTail(stderr);
        if (why) return reject(new CoppiceError(why.code, `${why.message}${tail}`, { cause: why.cause }));
        if (code === 0) return resolve({ stdout, stderr });
        const status = code !== null ? `exit ${code}` : `killed by ${sig}`;
        if (verb === 'checkout' && code === EXIT_POOL_EMPTY) {
          return reject(new CoppiceError('not_ready', `pool-ctl checkout ${args[0]}: pool empty (${status})${tail}`));
        }
        reject(backendFailed(`pool-ctl ${verb} ${args[0] ?? ''} failed (${status})${tail}`));
      });
    });
  }
}

function checkName(vm: string): string {
  if (!NAME.test(vm)) throw backendFailed(`pool-ctl: refusing bad vm name ${JSON.stringify(vm)}`);
  return vm;
}

function lastLine(s: string): string {
  const lines = s.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.length ? lines[lines.length - 1] : '';
}

function stderrTail(stderr: string): string {
  const last = lastLine(stderr);
  return last ? `: ${last.slice(0, 500)}` : '';
}
