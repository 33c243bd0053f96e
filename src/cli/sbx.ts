// `coppice sbx ...`: sandboxes. Every subcommand is one SDK call (src/sdk), printed as a table or
// a line for people, or as JSON with --json.
import type { ParseArgsConfig } from 'node:util';
import { Sandbox, type SandboxInfo } from '../sdk/index.ts';
import {
  Cmd,
  defaultIo,
  EXIT,
  EXIT_HELP,
  GLOBAL_HELP,
  keyValues,
  numberFlag,
  parse,
  relative,
  run,
  table,
  UsageError,
  type Io,
} from './common.ts';

export const SBX_USAGE = `usage: coppice sbx <command> [flags]

  create <template> [--timeout S] [--env K=V]... [--meta K=V]... [--memory MiB] [--cpus N] [--pids N]
  create --snapshot <snapshotID> [same flags]
                        create a sandbox; prints its id (--json: the whole sandbox)
  ls [-q] [--template T] [--state S]
                        list sandboxes (-q: ids only)
  info <id>             one sandbox, with its commands
  rm <id>...            destroy sandboxes (exit code: the first failure's)
  pause <id>            freeze it (409 / exit 4 if it is not running)
  resume <id>           thaw it
  exec <id> [flags] -- <cmd> [args...]
                        run a command, streaming (same as \`coppice exec\`; exits with the command's status)
  snapshot <id>         its files as of now; prints the snapshot id (501 / exit 5 on bhyve)
  fork <id> [--timeout S] [--meta K=V]...
                        a new independent sandbox with its files as of now; prints the new id

${GLOBAL_HELP}
${EXIT_HELP}`;

const CREATE_OPTIONS = {
  timeout: { type: 'string' },
  env: { type: 'string', multiple: true },
  meta: { type: 'string', multiple: true },
  memory: { type: 'string' },
  cpus: { type: 'string' },
  pids: { type: 'string' },
  snapshot: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

const OPTIONS: Record<string, ParseArgsConfig['options']> = {
  create: CREATE_OPTIONS,
  ls: { quiet: { type: 'boolean', short: 'q' }, template: { type: 'string' }, state: { type: 'string' } },
  fork: { timeout: CREATE_OPTIONS.timeout, meta: CREATE_OPTIONS.meta },
};
const ALIASES: Record<string, string> = { list: 'ls', delete: 'rm', kill: 'rm', show: 'info', inspect: 'info' };

export async function sbxCommand(argv: string[], io: Io = defaultIo()): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    (first === undefined ? io.stderr : io.stdout).write(SBX_USAGE);
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const sub = ALIASES[first] ?? first;
  // exec has its own flags, stdin/signal forwarding and exit status convention.
  if (sub === 'exec') return (await import('./exec.ts')).execCommand(rest);
  let parsed;
  try {
    parsed = parse(rest, OPTIONS[sub]);
  } catch (err) {
    io.stderr.write(`coppice sbx ${sub}: ${(err as Error).message}\n`);
    return EXIT.USAGE;
  }
  const { values, positionals } = parsed;
  const cmd = new Cmd(`sbx ${sub}`, io, values);
  if (values.help) {
    io.stdout.write(SBX_USAGE);
    return EXIT.OK;
  }
  const one = (what = 'sandbox id'): string => {
    if (positionals.length !== 1) throw new UsageError(positionals.length ? `expected one ${what}, got ${positionals.length}` : `missing ${what}`);
    return positionals[0]!;
  };
  const conn = () => ({ url: cmd.client.conn.url, apiKey: cmd.client.conn.apiKey });

  return run(cmd, async () => {
    switch (sub) {
      case 'create': {
        const snapshot = values.snapshot as string | undefined;
        if (snapshot ? positionals.length > 1 : positionals.length !== 1) {
          throw new UsageError(snapshot ? 'give at most one template with --snapshot' : 'missing template (or --snapshot ID)');
        }
        const template = positionals[0];
        const opts = {
          timeoutMs: secondsFlag('timeout', values.timeout),
          envVars: keyValues('env', values.env as string[] | undefined),
          metadata: keyValues('meta', values.meta as string[] | undefined),
          limits: limitsFrom(values),
        };
        const done = cmd.progress(`creating a sandbox from ${snapshot ?? template}…`);
        const sb = await (snapshot
          ? Sandbox.createFromSnapshot(snapshot, { ...conn(), ...opts, templateID: template })
          : Sandbox.create(template!, { ...conn(), ...opts })
        ).finally(done);
        if (cmd.json) return cmd.emitJson(sb.info);
        cmd.out(sb.sandboxID);
        cmd.note(`created ${sb.sandboxID} from ${sb.templateID} (${sb.backend}${sb.info.ip ? `, ${sb.info.ip}` : ''})`);
        return;
      }
      case 'ls': {
        if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
        let list = await Sandbox.list(conn());
        if (values.template) list = list.filter((s) => s.templateID === values.template);
        if (values.state) list = list.filter((s) => s.state === values.state);
        list.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.sandboxID.localeCompare(b.sandboxID));
        if (cmd.json) return cmd.emitJson(list);
        if (values.quiet) {
          for (const s of list) cmd.out(s.sandboxID);
          return;
        }
        if (!list.length) return cmd.note('no sandboxes');
        cmd.out(
          table(
            ['ID', 'TEMPLATE', 'BACKEND', 'STATE', 'IP', 'PROCS', 'STARTED', 'ENDS'],
            list.map((s) => [s.sandboxID, s.templateID, s.backend, s.state, s.ip, s.processes, relative(s.startedAt), relative(s.endAt)]),
          ),
        );
        return;
      }
      case 'info': {
        const sb = await Sandbox.get(one(), conn());
        const procs = await sb.processes();
        if (cmd.json) return cmd.emitJson({ ...sb.info, commands: procs });
        printInfo(cmd, sb.info);
        if (procs.length) {
          cmd.out('');
          cmd.out(
            table(
              ['PROCESS', 'KIND', 'STATE', 'EXIT', 'BYTES', 'COMMAND'],
              procs.map((p) => [p.processID, p.kind, p.state, p.exit ? (p.exit.exitCode ?? p.exit.signal ?? p.exit.reason ?? '?') : '', p.outputBytes, p.argv.join(' ')]),
            ),
          );
        }
        return;
      }
      case 'rm': {
        if (!positionals.length) throw new UsageError('missing sandbox id');
        let status: number = EXIT.OK;
        const removed: string[] = [];
        for (const id of positionals) {
          try {
            // DELETE directly (not Sandbox.kill, which forgives 404): a missing id is worth saying.
            const sb = await Sandbox.get(id, conn());
            await sb.kill();
            removed.push(id);
            if (!cmd.json) cmd.out(id);
          } catch (err) {
            const code = cmd.fail(err);
            if (status === EXIT.OK) status = code;
          }
        }
        if (cmd.json) cmd.emitJson({ removed });
        return status;
      }
      case 'pause':
      case 'resume': {
        const id = one();
        const sb = await Sandbox.get(id, conn());
        await (sub === 'pause' ? sb.pause() : sb.resume());
        if (cmd.json) return cmd.emitJson(await sb.getInfo());
        cmd.out(id);
        cmd.note(`${sub === 'pause' ? 'paused' : 'resumed'} ${id}`);
        return;
      }
      case 'snapshot': {
        const sb = await Sandbox.get(one(), conn());
        const done = cmd.progress(`snapshotting ${sb.sandboxID}…`);
        const snap = await sb.snapshot().finally(done);
        if (cmd.json) return cmd.emitJson(snap);
        cmd.out(snap.snapshotID);
        cmd.note(`snapshot ${snap.snapshotID} of ${snap.sandboxID} (${snap.template}, ${formatBytes(snap.sizeBytes)})`);
        return;
      }
      case 'fork': {
        const sb = await Sandbox.get(one(), conn());
        const timeoutMs = secondsFlag('timeout', values.timeout);
        const metadata = keyValues('meta', values.meta as string[] | undefined);
        const done = cmd.progress(`forking ${sb.sandboxID}…`);
        const fork = await sb.fork({ ...(timeoutMs ? { timeoutMs } : {}), ...(metadata ? { metadata } : {}) }).finally(done);
        if (cmd.json) return cmd.emitJson(fork.info);
        cmd.out(fork.sandboxID);
        cmd.note(`forked ${sb.sandboxID} -> ${fork.sandboxID}${fork.info.ip ? ` (${fork.info.ip})` : ''}`);
        return;
      }
      default:
        throw new UsageError(`unknown command "${first}" (try: create, ls, info, rm, pause, resume, exec, snapshot, fork)`);
    }
  });
}

/** The CLI's lifetimes are whole seconds (`--timeout 600`); the SDK's are ms. */
function secondsFlag(flag: string, v: unknown, min = 1): number | undefined {
  const s = numberFlag(flag, v, { integer: true, min });
  return s === undefined ? undefined : s * 1000;
}

function limitsFrom(values: Record<string, unknown>) {
  const memoryMiB = numberFlag('memory', values.memory, { integer: true });
  const cpus = numberFlag('cpus', values.cpus);
  const pids = numberFlag('pids', values.pids, { integer: true });
  if (memoryMiB === undefined && cpus === undefined && pids === undefined) return undefined;
  return { ...(memoryMiB !== undefined ? { memoryMiB } : {}), ...(cpus !== undefined ? { cpus } : {}), ...(pids !== undefined ? { pids } : {}) };
}

function printInfo(cmd: Cmd, s: SandboxInfo): void {
  const rows: [string, unknown][] = [
    ['id', s.sandboxID],
    ['template', s.templateID],
    ['backend', s.backend],
    ['state', s.lifecycle && s.lifecycle !== s.state ? `${s.state} (${s.lifecycle})` : s.state],
    ['ip', s.ip],
    ['started', `${s.startedAt} (${relative(s.startedAt)})`],
    ['ends', `${s.endAt} (${relative(s.endAt)})`],
    ['limits', s.limits ? `${s.limits.memoryMiB} MiB, ${s.limits.cpus} cpus, ${s.limits.pids} pids` : null],
    ['metadata', s.metadata && Object.keys(s.metadata).length ? Object.entries(s.metadata).map(([k, v]) => `${k}=${v}`).join(' ') : null],
    ['processes', s.processes],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) cmd.out(`${k.padEnd(w)}  ${v === null || v === undefined || v === '' ? '-' : String(v)}`);
}

function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '?';
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}
