// The SSH exec shim (seed: "The SSH-exec shim"): one ssh2 connection per checked-out guest, one
// channel per exec. The seed's `ssh` options map onto ssh2 as: StrictHostKeyChecking=no and
// UserKnownHostsFile=/dev/null -> hostVerifier accepts anything (pool guests are fungible and
// share image host keys); ConnectTimeout=5 -> readyTimeout 5000; BatchMode=yes -> publickey only.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { Client, type ClientChannel } from 'ssh2';
import { backendFailed, badRequest, CoppiceError } from '../../errors.ts';
import type { ExecExit, ExecProcess, ExecSpec } from '../types.ts';

export const DEFAULT_POOL_KEY = '/root/coppice-signing/pool-key';

/** Environment variable that tags every process of one exec, so kill() can find them. */
export const EXEC_MARKER = 'COPPICE_EXEC_ID';

const SAFE = /^[A-Za-z0-9_\-.,:/@%+]+$/;

/** Quote one word for POSIX sh so that it reaches the command unchanged, whatever it holds. */
function quoteWord(s: string): string {
  if (s.includes('\0')) throw badRequest('argv', 'arguments cannot contain NUL bytes');
  if (SAFE.test(s)) return s;
  // Inside single quotes nothing is special except the quote itself: close, emit \', reopen.
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Single-quote-escape an argv into one string for the guest's /bin/sh. */
export function shellQuote(argv: string[]): string {
  return argv.map(quoteWord).join(' ');
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const USER = /^[a-z_][a-z0-9_-]*\$?$/;

/**
 * The remote command line: `cd <cwd> && exec env K=V ... <argv>`, wrapped in
 * `setpriv ... /bin/sh -c '...'` for a non-root user. `exec` makes the command the
 * process sshd started, so exit status and signals are the command's own.
 */
/**
 * The guest's limit on one argument string (Linux MAX_ARG_STRLEN, 32 pages): the whole command
 * line reaches the guest's shell as one `-c` argument, so a longer one cannot be run (and must
 * not reach the shared SSH connection).
 */
export const MAX_REMOTE_COMMAND = 131072;

export function buildRemoteCommand(spec: ExecSpec, defaultUser = 'root', execId?: string): string {
  if (spec.argv.length === 0) throw badRequest('argv', 'must not be empty');
  const env = Object.entries(spec.env ?? {});
  for (const [k] of env) if (!ENV_KEY.test(k)) throw badRequest('env', `invalid variable name ${JSON.stringify(k)}`);
  // Each field named for itself (quoteWord's own check would say argv).
  for (const [k, v] of env) if (v.includes('\0')) throw badRequest(`env.${k}`, 'values cannot contain NUL bytes');
  if (spec.cwd?.includes('\0')) throw badRequest('cwd', 'cannot contain NUL bytes');
  const cmd = remoteCommand(spec, env, defaultUser, execId);
  if (Buffer.byteLength(cmd) > MAX_REMOTE_COMMAND) {
    throw badRequest('argv', `the quoted command line is ${Buffer.byteLength(cmd)} bytes; a guest takes at most ${MAX_REMOTE_COMMAND} (pass large data on stdin)`);
  }
  return cmd;
}

function remoteCommand(spec: ExecSpec, env: [string, string][], defaultUser: string, execId?: string): string {
  // `env` would take a first word containing `=` for an assignment.
  if (env.length > 0 && spec.argv[0].includes('=')) throw badRequest('argv', 'argv[0] cannot contain "=" when env is set');
  const user = spec.user ?? defaultUser;
  if (user !== 'root' && !USER.test(user)) throw badRequest('user', `invalid user name ${JSON.stringify(user)}`);
  const run = env.length > 0
    ? `exec env ${shellQuote(env.map(([k, v]) => `${k}=${v}`))} ${shellQuote(spec.argv)}`
    : `exec ${shellQuote(spec.argv)}`;
  // A non-root exec with no cwd starts in the user's home, not in root's.
  const cd = spec.cwd !== undefined ? `cd ${quoteWord(spec.cwd.startsWith('-') ? `./${spec.cwd}` : spec.cwd)} && `
    : user !== 'root' ? 'cd && ' : '';
  // The marker is exported by the shell that execs the command, so the command inherits it.
  const cmd = `${execId !== undefined ? `export ${EXEC_MARKER}=${quoteWord(execId)}; ` : ''}${cd}${run}`;
  if (user === 'root') return cmd;
  // setpriv execs in place (runuser/su fork and report a signal death as 128+n); --reset-env sets
  // HOME/USER/SHELL/PATH for the user.
  return `exec setpriv --reuid=${user} --regid="$(id -g ${user})" --init-groups --reset-env /bin/sh -c ${quoteWord(cmd)}`;
}

export interface GuestConnectionOptions {
  host: string;
  port?: number;
  username?: string;
  /** Private key file; read once per connection attempt. Default: the seed's pool key. */
  keyPath?: string;
  privateKey?: Buffer | string;
  /** Handshake deadline (the seed's ConnectTimeout=5). */
  readyTimeoutMs?: number;
  /** User for execs that name none (the bhyve default is root). */
  defaultUser?: string;
  /**
   * Keepalive: a connection whose peer goes silent (partition, dead guest) is declared lost after
   * interval x countMax and the next exec redials. Long enough that a paused (SIGSTOPped) guest
   * keeps its connection and its streams through ordinary pauses (default 10 s x 12 = 2 min);
   * a longer pause drops them, and execs after resume reconnect.
   */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
}

interface InFlight {
  client: Client;
  lost(err: CoppiceError): void;
}

/** A long-lived SSH connection to one guest; execs are channels; a dropped connection is redialled on the next exec. */
export class GuestConnection {
  readonly host: string;
  private readonly opts: GuestConnectionOptions;
  private client: Client | null = null;
  private ready: Promise<Client> | null = null;
  private readonly inflight = new Set<InFlight>();
  private closed = false;

  constructor(opts: GuestConnectionOptions) {
    this.opts = opts;
    this.host = opts.host;
  }

  get connected(): boolean {
    return this.client !== null;
  }

  /** Open the connection now (at checkout) so the first exec does not pay for the handshake. */
  async connect(signal?: AbortSignal): Promise<void> {
    await this.ensure(signal);
  }

  private where(): string {
    return `${this.opts.username ?? 'root'}@${this.host}:${this.opts.port ?? 22}`;
  }

  private ensure(signal?: AbortSignal): Promise<Client> {
    if (this.closed) return Promise.reject(backendFailed(`ssh ${this.where()}: connection closed`));
    this.ready ??= this.open(signal);
    return this.ready;
  }

  private open(signal?: AbortSignal): Promise<Client> {
    return new Promise<Client>((resolve, reject) => {
      const c = new Client();
      let settled = false;
      const fail = (why: string, cause?: unknown) => {
        if (settled) return;
        settled = true;
        this.ready = null;
        signal?.removeEventListener('abort', onAbort);
        c.destroy();
        reject(backendFailed(`ssh ${this.where()}: ${why}`, cause));
      };
      const onAbort = () => fail('aborted while connecting');
      if (signal?.aborted) return fail('aborted while connecting');
      signal?.addEventListener('abort', onAbort, { once: true });
      c.once('ready', () => {
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (this.closed) {
          c.end();
          return reject(backendFailed(`ssh ${this.where()}: connection closed`));
        }
        // Execs are small request/response exchanges: without TCP_NODELAY, Nagle plus delayed
        // ACKs add ~40 ms to every channel open.
        c.setNoDelay(true);
        this.client = c;
        resolve(c);
      });
      c.on('error', (err: Error) => (settled ? this.dropped(c, err.message) : fail(err.message, err)));
      c.on('end', () => (settled ? this.dropped(c, 'connection ended') : fail('connection ended during handshake')));
      c.on('close', () => (settled ? this.dropped(c, 'connection closed') : fail('connection closed during handshake')));
      let privateKey: Buffer | string;
      try {
        privateKey = this.opts.privateKey ?? readFileSync(this.opts.keyPath ?? DEFAULT_POOL_KEY);
      } catch (err) {
        return fail(`cannot read key ${this.opts.keyPath ?? DEFAULT_POOL_KEY}: ${(err as Error).message}`, err);
      }
      c.connect({
        host: this.host,
        port: this.opts.port ?? 22,
        username: this.opts.username ?? 'root',
        privateKey,
        authHandler: ['publickey'],
        tryKeyboard: false,
        hostVerifier: () => true,
        readyTimeout: this.opts.readyTimeoutMs ?? 5000,
        keepaliveInterval: this.opts.keepaliveIntervalMs ?? 10_000,
        keepaliveCountMax: this.opts.keepaliveCountMax ?? 12,
      });
    });
  }

  /** The connection went away: forget it (the next exec redials) and fail the execs riding on it. */
  private dropped(c: Client, why: string): void {
    if (this.client === c) {
      this.client = null;
      this.ready = null;
    }
    const err = backendFailed(`exec on ${this.host}: SSH connection lost before the command exited (${why})`);
    for (const f of [...this.inflight]) if (f.client === c) f.lost(err);
  }

  /** Run a command; streams are raw bytes. Bad input (NUL in argv, bad env name) throws at once. */
  exec(spec: ExecSpec): ExecProcess {
    const execId = randomBytes(8).toString('hex');
    // The shell sshd starts prints its own PID first (the command keeps it: everything after is
    // `exec`); the shim takes that line off stderr, so the command's stderr is untouched.
    return this.execCommand(PID_PREFIX + buildRemoteCommand(spec, this.opts.defaultUser ?? 'root', execId), execId, true);
  }

  /**
   * Run an already-quoted command line through the guest's login shell. `reportsPid`: the command
   * line starts with PID_PREFIX, whose line is taken off stderr and answers pid().
   */
  execCommand(command: string, execId?: string, reportsPid = false): ExecProcess {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const stdin = new PassThrough();
    let settle!: (r: ExecExit | CoppiceError) => void;
    const exited = new Promise<ExecExit>((resolve, reject) => {
      let done = false;
      settle = (r) => {
        if (done) return;
        done = true;
        if (r instanceof CoppiceError) reject(r);
        else resolve(r);
      };
    });
    exited.catch(() => {}); // callers that never await `exited` must not crash the gateway

    let resolvePid!: (pid: number | null) => void;
    const pid = new Promise<number | null>((r) => (resolvePid = r));
    // Bytes of stderr until the PID line is complete (null once it has been taken off).
    let pidLine: Buffer | null = reportsPid ? Buffer.alloc(0) : null;
    if (!reportsPid) resolvePid(null);

    let channel: ClientChannel | null = null;
    let finished = false;
    let pendingKill: NodeJS.Signals | null = null;
    let flight: InFlight | null = null;

    const finish = (r: ExecExit | CoppiceError) => {
      if (finished) return;
      finished = true;
      if (flight) this.inflight.delete(flight);
      // ssh2 never calls back a write to a closed channel; stop feeding it and discard stdin.
      if (channel) stdin.unpipe(channel);
      stdin.resume();
      if (pidLine) {
        // Never got a whole line: whatever came is the command's own stderr.
        if (pidLine.length > 0) stderr.write(pidLine);
        pidLine = null;
      }
      resolvePid(null);
      if (!stdout.writableEnded) stdout.end();
      if (!stderr.writableEnded) stderr.end();
      settle(r);
    };

    const kill = (sig: NodeJS.Signals) => {
      if (finished) return;
      if (!channel) {
        pendingKill = sig;
        return;
      }
      if (!execId) return; // a raw execCommand carries no marker to find its processes by
      // Not an SSH `signal` request: OpenSSH before 9.8 refuses those for root sessions ("session
      // signalling requires privilege separation" - root logins skip the post-auth privsep child),
      // and closing the channel does not end a no-pty command (sshd keeps the session until the
      // child exits). Instead a second channel signals every process carrying this exec's marker.
      // It prints how many processes it hit: 0 means the shell has not exported the marker yet
      // (kill right after exec), so try again shortly, for up to ~1 s.
      const id = execId;
      const attempt = (left: number) => {
        const helper = this.execCommand(killCommand(id, sig));
        let out = '';
        helper.stdout.on('data', (b: Buffer) => (out += b));
        helper.stderr.resume();
        helper.stdin.end();
        helper.exited.then(() => {
          if (out.trim() === '0' && !finished && left > 0) setTimeout(() => attempt(left - 1), 50).unref();
        }, () => {});
      };
      attempt(20);
    };

    this.ensure().then(
      (client) => {
        if (finished) return;
        flight = { client, lost: (err) => finish(err) };
        this.inflight.add(flight);
        client.exec(command, (err, ch) => {
          if (err) return finish(backendFailed(`exec on ${this.host}: could not open an SSH channel: ${err.message}`, err));
          if (finished) return void ch.close();
          channel = ch;
          let exit: ExecExit | null = null;
          ch.on('exit', (code: number | null, signal?: string) => {
            exit = { exitCode: typeof code === 'number' ? code : null, signal: signal ?? null };
          });
          let ends = 0;
          const ended = () => {
            if (++ends < 3) return;
            if (exit) finish(exit);
            else finish(backendFailed(`exec on ${this.host}: the SSH channel closed without an exit status`));
          };
          ch.on('data', (b: Buffer) => { if (!stdout.write(b)) { ch.pause(); stdout.once('drain', () => ch.resume()); } });
          ch.stderr.on('data', (b: Buffer) => {
            if (pidLine) {
              const buf = Buffer.concat([pidLine, b]);
              const nl = buf.indexOf(10);
              if (nl < 0 && buf.length <= 24) return void (pidLine = buf);
              pidLine = null;
              const n = nl < 0 ? NaN : Number(buf.subarray(0, nl).toString('latin1'));
              const ok = Number.isInteger(n) && n > 0;
              resolvePid(ok ? n : null);
              b = ok ? buf.subarray(nl + 1) : buf;
              if (b.length === 0) return;
            }
            if (!stderr.write(b)) { ch.stderr.pause(); stderr.once('drain', () => ch.stderr.resume()); }
          });
          ch.once('end', ended);
          ch.stderr.once('end', ended);
          ch.once('close', ended);
          stdin.pipe(ch);
          if (pendingKill) kill(pendingKill);
        });
      },
      (err: CoppiceError) => finish(err),
    );

    return { stdout, stderr, stdin, exited, kill, pid: () => pid };
  }

  /** Close the connection; in-flight execs fail, later execs are refused. */
  close(): void {
    this.closed = true;
    const c = this.client;
    this.client = null;
    this.ready = null;
    c?.end();
  }

  /** Drop the connection without closing the shim (tests and reconnect paths use it). */
  disconnect(): void {
    const c = this.client;
    if (c) {
      this.dropped(c, 'disconnected');
      c.destroy();
    }
  }
}

/** Prints the PID of the shell sshd started (the command's, as it execs) as the first stderr line. */
const PID_PREFIX = `printf '%s\\n' "$$" >&2; `;

const SIGNAL_NAME = /^SIG[A-Z0-9]+$/;

/** The guest-side half of kill(): signal every process whose environment carries the exec's marker. */
function killCommand(execId: string, sig: NodeJS.Signals): string {
  if (!SIGNAL_NAME.test(sig)) throw badRequest('signal', `invalid signal ${JSON.stringify(sig)}`);
  const name = sig.slice(3);
  return `n=0; for f in $(grep -lzx ${EXEC_MARKER}=${execId} /proc/[0-9]*/environ 2>/dev/null); do ` +
    `p=\${f#/proc/}; kill -s ${name} "\${p%/environ}" 2>/dev/null && n=$((n+1)); done; echo $n`;
}
