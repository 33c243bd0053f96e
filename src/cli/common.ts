// What every client command shares: flags, the gateway connection, output (tables for people,
// JSON for scripts) and exit codes that mean something.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CoppiceApiError, CoppiceClient, ConnectionError } from '../sdk/index.ts';

/**
 * Exit codes of the client commands (tpl, sbx, pool, snap). `coppice exec` / `coppice sbx exec`
 * exit with the command's own status instead (see exec.ts).
 */
export const EXIT = {
  OK: 0,
  /** anything else: internal error (500), an unexpected answer */
  GENERIC: 1,
  /** bad usage: unknown command or flag, missing argument, or the gateway said 400 / 413 */
  USAGE: 2,
  /** 404: no such sandbox, template, snapshot or pool */
  NOT_FOUND: 3,
  /** 409: wrong state (pause a paused sandbox, a warm already running) */
  CONFLICT: 4,
  /** 501: not supported by this backend (snapshot on bhyve, warm on a jail template) */
  UNSUPPORTED: 5,
  /** 503: the gateway is starting or draining */
  UNAVAILABLE: 6,
  /** 401: no key or a wrong one */
  AUTH: 7,
  /** 504: the gateway gave up waiting (a backend step timed out) */
  TIMEOUT: 8,
  /** 502: the backend failed (runc, pool-ctl, ssh) */
  BACKEND: 9,
  /** no answer at all: gateway not running at that URL, network error */
  UNREACHABLE: 10,
} as const;

export function exitCodeFor(err: unknown): number {
  if (err instanceof ConnectionError) return EXIT.UNREACHABLE;
  if (err instanceof CoppiceApiError) {
    switch (err.status) {
      case 400:
      case 413:
        return EXIT.USAGE;
      case 401:
        return EXIT.AUTH;
      case 404:
        return EXIT.NOT_FOUND;
      case 409:
        return EXIT.CONFLICT;
      case 501:
        return EXIT.UNSUPPORTED;
      case 502:
        return EXIT.BACKEND;
      case 503:
        return EXIT.UNAVAILABLE;
      case 504:
        return EXIT.TIMEOUT;
    }
  }
  return EXIT.GENERIC;
}

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

export const defaultIo = (): Io => ({ stdout: process.stdout, stderr: process.stderr, env: process.env });

export const GLOBAL_OPTIONS = {
  url: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

export const GLOBAL_HELP = `global flags:
  --url URL     gateway URL (default: $COPPICE_URL, else http://127.0.0.1:3000)
  --key KEY     API key (default: $COPPICE_API_KEY)
  --json        machine-readable output (errors too: {"code","error","message"} on stdout)
  -h, --help    this help
`;

export const EXIT_HELP = `exit codes:
  0 ok   1 generic/internal   2 usage or invalid argument (400)   3 not found (404)
  4 conflict/wrong state (409)   5 unsupported on this backend (501)   6 unavailable: starting/draining (503)
  7 auth: missing or wrong key (401)   8 timeout (504)   9 backend failed (502)   10 gateway unreachable
`;

export class UsageError extends Error {}

export type Values = Record<string, string | boolean | string[] | undefined>;

/** Parse flags for one command (its own plus the global ones); UsageError on anything unknown. */
export function parse(argv: string[], options: ParseArgsConfig['options'] = {}): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...GLOBAL_OPTIONS, ...options }, allowPositionals: true, strict: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** A command's context: its output helpers and (lazily) the gateway client. */
export class Cmd {
  readonly json: boolean;
  private clientInstance: CoppiceClient | undefined;

  constructor(
    readonly name: string,
    readonly io: Io,
    readonly values: Values,
  ) {
    this.json = values.json === true;
  }

  get client(): CoppiceClient {
    this.clientInstance ??= new CoppiceClient({
      url: (this.values.url as string | undefined) ?? this.io.env.COPPICE_URL,
      apiKey: (this.values.key as string | undefined) ?? this.io.env.COPPICE_API_KEY,
    });
    return this.clientInstance;
  }

  out(line = ''): void {
    this.io.stdout.write(line + '\n');
  }

  emitJson(value: unknown): void {
    this.io.stdout.write(JSON.stringify(value, null, 2) + '\n');
  }

  /** A line for people that scripts do not want on stdout (progress, notes). */
  note(line: string): void {
    if (!this.json) this.io.stderr.write(line + '\n');
  }

  /** A transient status line on an interactive stderr; nothing otherwise. */
  progress(line: string): () => void {
    if (this.json || !this.io.stderr.isTTY) return () => {};
    this.io.stderr.write(`${line}\r`);
    return () => this.io.stderr.write(`\x1b[2K\r`);
  }

  /** Report a failure; returns its exit code. */
  fail(err: unknown): number {
    const code = exitCodeFor(err);
    const message = err instanceof Error ? err.message : String(err);
    if (this.json) {
      const body =
        err instanceof CoppiceApiError
          ? err.toJSON()
          : { code: 0, error: err instanceof ConnectionError ? 'unreachable' : 'client_error', message };
      this.io.stdout.write(JSON.stringify(body) + '\n');
    }
    let hint = '';
    if (code === EXIT.AUTH) hint = ' (check --key or COPPICE_API_KEY)';
    if (code === EXIT.UNREACHABLE) hint = ' (is the gateway running? check --url or COPPICE_URL)';
    this.io.stderr.write(`coppice ${this.name}: ${message}${hint}\n`);
    return code;
  }
}

/** Columns padded to the widest cell; the last column is not padded. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

/** "K=V" flags into a map (UsageError naming the flag otherwise). */
export function keyValues(flag: string, list: string[] | undefined): Record<string, string> | undefined {
  if (!list?.length) return undefined;
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError(`--${flag} ${kv}: must be KEY=VALUE`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** A flag that must be a number (optionally whole); undefined when absent. */
export function numberFlag(flag: string, v: unknown, opts: { integer?: boolean; min?: number } = {}): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min)) {
    throw new UsageError(`--${flag}: must be ${opts.integer ? 'a whole number' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}`);
  }
  return n;
}

/** "in 4m 59s" / "3m ago" */
export function relative(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '';
  const ms = Date.parse(iso) - now;
  if (!Number.isFinite(ms)) return '';
  const s = Math.round(Math.abs(ms) / 1000);
  const txt = s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : s < 86400 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : `${Math.floor(s / 86400)}d`;
  return ms >= 0 ? `in ${txt}` : `${txt} ago`;
}

/** Run one command body with the shared error handling. */
export async function run(cmd: Cmd, body: () => Promise<number | void>): Promise<number> {
  try {
    return (await body()) ?? EXIT.OK;
  } catch (err) {
    if (err instanceof UsageError) {
      cmd.io.stderr.write(`coppice ${cmd.name}: ${err.message}\n`);
      return EXIT.USAGE;
    }
    return cmd.fail(err);
  }
}
