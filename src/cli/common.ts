// What every client command shares: flags, the gateway connection, output (tables for people,
// JSON for scripts) and exit codes that mean something.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CoppiceApiError, CoppiceClient, ConnectionError } from '../sdk/index.ts';
import { EXIT_HELP, findSub, GLOBAL_HELP, groupUsage, parseOptions, subUsage, type GroupSpec, type SubSpec } from './help.ts';

export { EXIT_HELP, GLOBAL_HELP };

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
  /** cannot connect: nothing answers at that URL (not running, wrong port, network, TLS) */
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

export class UsageError extends Error {}

export type Values = Record<string, string | boolean | string[] | undefined>;

/** Parse flags for one command (its own plus the global ones); UsageError on anything unknown. */
export function parse(argv: string[], options: ParseArgsConfig['options'] = {}): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...parseOptions(), ...options }, allowPositionals: true, strict: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    throw new UsageError(argsMessage(err));
  }
}

/** parseArgs' messages in a line of our own ("Unknown option '--x'. To specify a positional..." is not for people). */
export function argsMessage(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const flag = /'(-[^' ]+)/.exec(e.message ?? '')?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${flag ?? ''} (see --help)`.replace('  ', ' ');
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /argument missing/.test(e.message ?? '') ? `${flag ?? 'a flag'} needs a value` : `${flag ?? 'a flag'} takes no value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${/'([^']*)'/.exec(e.message ?? '')?.[1] ?? ''}`.trim();
    default:
      return (e.message ?? String(err)).split('\n')[0]!;
  }
}

/** Why a connection failed, in words (not OpenSSL's or libuv's). */
export function connectionMessage(err: ConnectionError): string {
  const cause = (err as { cause?: { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } } }).cause;
  const inner = cause?.cause ?? cause;
  const code = inner?.code ?? '';
  const target = /https?:\/\/[^/\s]+/.exec(err.message)?.[0] ?? 'the gateway';
  const why =
    cause?.name === 'TimeoutError' ? 'no answer in time'
    : code === 'ECONNREFUSED' ? 'connection refused'
    : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'host not found'
    : code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' ? 'connection timed out'
    : code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' ? 'the connection was cut'
    : code === 'EHOSTUNREACH' || code === 'ENETUNREACH' ? 'no route to the host'
    : /SSL|TLS|CERT|EPROTO/i.test(code + (inner?.message ?? '')) ? 'TLS failed (an http:// gateway at an https:// URL, or a certificate problem)'
    : null;
  return why ? `cannot connect to ${target}: ${why}` : oneLine(err.message);
}

/** Messages are one line, whatever they carried. */
export const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' ').trim();

/** A gateway URL the CLI can use, or a UsageError (exit 2) saying why not. */
export function checkUrl(url: string | undefined): void {
  if (url === undefined) return;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(url)}: not a URL (e.g. http://127.0.0.1:3000)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--url ${JSON.stringify(url)}: must start with http:// or https://`);
}

/** Colours only for a terminal, and never with NO_COLOR (or --no-color). */
export function colorsFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv, values: Values = {}): (code: string, s: string) => string {
  const on = stream.isTTY === true && !env.NO_COLOR && values['no-color'] !== true && env.TERM !== 'dumb';
  return on ? (code, s) => `\x1b[${code}m${s}\x1b[0m` : (_code, s) => s;
}

export const STATE_COLOR: Record<string, string> = { running: '32', paused: '33', starting: '36', stopping: '36', failed: '31', killed: '90' };

/** A command's context: its output helpers and (lazily) the gateway client. */
export class Cmd {
  readonly json: boolean;
  /** Colour for stdout / stderr (identity when not a terminal or NO_COLOR). */
  readonly paint: (code: string, s: string) => string;
  readonly paintErr: (code: string, s: string) => string;
  private clientInstance: CoppiceClient | undefined;

  constructor(
    readonly name: string,
    readonly io: Io,
    readonly values: Values,
  ) {
    this.json = values.json === true;
    this.paint = colorsFor(io.stdout, io.env, values);
    this.paintErr = colorsFor(io.stderr, io.env, values);
  }

  get client(): CoppiceClient {
    const url = (this.values.url as string | undefined) ?? this.io.env.COPPICE_URL;
    checkUrl(url);
    this.clientInstance ??= new CoppiceClient({ url, apiKey: (this.values.key as string | undefined) ?? this.io.env.COPPICE_API_KEY });
    return this.clientInstance;
  }

  /** A table for people: the header bold, the STATE column coloured (on a terminal only). */
  table(headers: string[], rows: (string | number | null | undefined)[][]): string {
    const lines = table(headers, rows).split('\n');
    const stateAt = headers.indexOf('STATE');
    return lines
      .map((line, i) => {
        if (i === 0) return this.paint('1', line);
        const state = stateAt >= 0 ? String(rows[i - 1]![stateAt] ?? '') : '';
        const color = STATE_COLOR[state];
        return color ? line.replace(new RegExp(`(?<=\\s)${state}(?=\\s|$)`), (m) => this.paint(color, m)) : line;
      })
      .join('\n');
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
    const message = err instanceof ConnectionError ? connectionMessage(err) : oneLine(err instanceof Error ? err.message : String(err));
    if (this.json) {
      const body =
        err instanceof CoppiceApiError
          ? err.toJSON()
          : { code: 0, error: err instanceof ConnectionError ? 'unreachable' : 'client_error', message };
      this.io.stdout.write(JSON.stringify(body) + '\n');
    }
    let hint = '';
    if (code === EXIT.AUTH && !message.includes('COPPICE_API_KEY')) hint = ' (check --key or COPPICE_API_KEY)';
    if (code === EXIT.UNREACHABLE) hint = ' (is the gateway running? check --url or COPPICE_URL)';
    this.io.stderr.write(`${this.paintErr('31', `coppice ${this.name}:`)} ${message}${hint}\n`);
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
      cmd.io.stderr.write(`${cmd.paintErr('31', `coppice ${cmd.name}:`)} ${err.message}\n`);
      return EXIT.USAGE;
    }
    return cmd.fail(err);
  }
}

/**
 * The start of every group command: help at the group and the command level, the subcommand by
 * name or alias, its flags parsed. A number is the exit code when there is nothing more to do.
 */
export function enter(g: GroupSpec, argv: string[], io: Io): { sub: SubSpec; cmd: Cmd; positionals: string[] } | number {
  const [first, ...rest] = argv;
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    (first === undefined ? io.stderr : io.stdout).write(groupUsage(g));
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const sub = findSub(g, first);
  const paintErr = colorsFor(io.stderr, io.env);
  if (!sub) {
    io.stderr.write(`${paintErr('31', `coppice ${g.name}:`)} unknown command "${first}" (try: ${g.subs.map((s) => s.name).join(', ')})\n`);
    return EXIT.USAGE;
  }
  let parsed;
  try {
    parsed = parse(rest, parseOptions(sub.flags));
  } catch (err) {
    io.stderr.write(`${paintErr('31', `coppice ${g.name} ${sub.name}:`)} ${(err as Error).message.replace('(see --help)', `(coppice ${g.name} ${sub.name} --help)`)}\n`);
    return EXIT.USAGE;
  }
  if (parsed.values.help) {
    io.stdout.write(subUsage(g, sub));
    return EXIT.OK;
  }
  return { sub, cmd: new Cmd(`${g.name} ${sub.name}`, io, parsed.values), positionals: parsed.positionals };
}
