// Host helpers for the benches: run a tool, pick an address range nobody on this host uses, ids.
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Spawn argv (no shell), optional stdin, wait for close. Rejects on a non-zero exit unless `allowFail`. */
export function sh(
  file: string,
  args: string[],
  opts: { input?: string; allowFail?: boolean; env?: NodeJS.ProcessEnv; timeoutMs?: number; outFd?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const out = opts.outFd ?? 'pipe';
    const child = spawn(file, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', out, out],
      env: opts.env,
      timeout: opts.timeoutMs,
    });
    const so: Buffer[] = [];
    const se: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => so.push(b));
    child.stderr?.on('data', (b: Buffer) => se.push(b));
    child.on('error', reject);
    child.on('close', (code, sig) => {
      const r = { code, stdout: Buffer.concat(so).toString(), stderr: Buffer.concat(se).toString() };
      if (code === 0 || opts.allowFail) resolve(r);
      else reject(new Error(`${[file, ...args].join(' ')}: ${r.stderr.trim() || (sig ? `killed by ${sig}` : `exit ${code}`)}`));
    });
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(opts.input);
    }
  });
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';
/** 10 chars [a-z0-9], the sandbox id shape (fits `xxx<id>h` in IFNAMSIZ). */
export function newId(): string {
  let s = '';
  for (const b of randomBytes(10)) s += ALNUM[b % ALNUM.length];
  return s;
}

/**
 * The first /24 of `candidates` (e.g. `10.78.200.0/24`) that no address or route on this host
 * touches. Other engineers run gateways and tests on this machine at the same time; colliding on
 * a /32 route would fail their creates or ours.
 */
export function freeSubnet(candidates: string[]): string {
  const seen =
    execFileSync('ip', ['-4', '-o', 'addr']).toString() + execFileSync('ip', ['-4', 'route', 'show', 'table', 'all']).toString();
  for (const c of candidates) {
    const net3 = c.split('.').slice(0, 3).join('.') + '.';
    if (!seen.includes(' ' + net3) && !seen.includes('\n' + net3) && !seen.startsWith(net3)) return c;
  }
  throw new Error(`no free subnet among ${candidates[0]} .. ${candidates[candidates.length - 1]}`);
}

export function range(a: number, b: number, f: (i: number) => string): string[] {
  const out: string[] = [];
  for (let i = a; i <= b; i++) out.push(f(i));
  return out;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Progress line on stderr (the runner passes it through). */
export function log(msg: string): void {
  process.stderr.write(`  · ${msg}\n`);
}
