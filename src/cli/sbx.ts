// `coppice sbx ...`: sandboxes. Every subcommand is one SDK call (src/sdk), printed as a table or
// a line for people, or as JSON with --json.
import { Sandbox, type ExecStream, type SandboxInfo } from '../sdk/index.ts';
import { Cmd, defaultIo, enter, EXIT, keyValues, numberFlag, relative, run, UsageError, type Io } from './common.ts';
import type { GroupSpec } from './help.ts';

const TIMEOUT_FLAG = { type: 'string', arg: 'S', help: 'lifetime in seconds from now (default: the gateway\'s, 300)' } as const;
const META_FLAG = { type: 'string', arg: 'K=V', multiple: true, help: 'metadata' } as const;

export const SBX: GroupSpec = {
  name: 'sbx',
  help: 'sandboxes',
  aliases: ['sandbox', 'sandboxes'],
  subs: [
    {
      name: 'create',
      args: '<template>',
      help: 'create a sandbox (from a template, or a snapshot with --snapshot); prints its id (--json: the whole sandbox)',
      flags: {
        timeout: TIMEOUT_FLAG,
        env: { type: 'string', arg: 'K=V', multiple: true, help: 'environment variable of every command' },
        meta: META_FLAG,
        memory: { type: 'string', arg: 'MiB', help: 'memory limit' },
        cpus: { type: 'string', arg: 'N', help: 'CPU limit (may be fractional)' },
        pids: { type: 'string', arg: 'N', help: 'process limit' },
        snapshot: { type: 'string', arg: 'ID', help: 'start from this snapshot\'s files (then <template> is optional)' },
      },
    },
    {
      name: 'ls',
      help: 'list sandboxes',
      aliases: ['list'],
      flags: {
        quiet: { type: 'boolean', short: 'q', help: 'ids only' },
        template: { type: 'string', arg: 'T', help: 'only those of this template' },
        state: { type: 'string', arg: 'S', help: 'only those in this state (running, paused, ...)' },
      },
    },
    { name: 'info', args: '<id>', help: 'one sandbox, with its commands', aliases: ['show', 'inspect'] },
    { name: 'rm', args: '<id>...', help: 'destroy sandboxes (exit code: the first failure\'s)', aliases: ['delete', 'kill'] },
    { name: 'pause', args: '<id>', help: 'freeze it (exit 4 if it is not running)' },
    { name: 'resume', args: '<id>', help: 'thaw it' },
    {
      name: 'connect',
      args: '<id>',
      help: 'resume it if it is paused and set its lifetime from now (E2B\'s connect); prints its id',
      flags: { timeout: TIMEOUT_FLAG },
    },
    { name: 'timeout', args: '<id> <seconds>', help: 'end it <seconds> from now (may shorten; 0 ends it now)' },
    {
      name: 'logs',
      args: '<id> [processID]',
      help: 'a command\'s output as the gateway keeps it (default: the latest command); -f follows it to its exit',
      flags: { follow: { type: 'boolean', short: 'f', help: 'keep printing until the command exits' } },
    },
    { name: 'exec', args: '<id> [flags] -- <cmd> [args...]', help: 'run a command, streaming (= coppice exec: see coppice exec --help)' },
    { name: 'snapshot', args: '<id>', help: 'its files as of now; prints the snapshot id (exit 5 on bhyve)' },
    { name: 'fork', args: '<id>', help: 'a new independent sandbox with its files as of now; prints the new id', flags: { timeout: TIMEOUT_FLAG, meta: META_FLAG } },
  ],
};

export async function sbxCommand(argv: string[], io: Io = defaultIo()): Promise<number> {
  // exec has its own flags, stdin/signal forwarding and exit status convention.
  if (argv[0] === 'exec') return (await import('./exec.ts')).execCommand(argv.slice(1));
  const e = enter(SBX, argv, io);
  if (typeof e === 'number') return e;
  const { cmd, positionals } = e;
  const sub = e.sub.name;
  const values = cmd.values;
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
          cmd.table(
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
            cmd.table(
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
      case 'connect': {
        const id = one();
        const sb = await Sandbox.connect(id, { ...conn(), timeoutMs: secondsFlag('timeout', values.timeout, 0) });
        if (cmd.json) return cmd.emitJson(sb.info);
        cmd.out(id);
        cmd.note(`connected to ${id}: ${sb.info.state}, ends ${relative(sb.info.endAt)}`);
        return;
      }
      case 'logs': {
        if (positionals.length < 1 || positionals.length > 2) throw new UsageError('usage: coppice sbx logs <id> [processID]');
        const sb = await Sandbox.get(positionals[0]!, conn());
        let pid = positionals[1];
        if (!pid) {
          const procs = (await sb.processes()).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
          if (!procs.length) return cmd.note(`no commands in ${sb.sandboxID}`);
          pid = procs.at(-1)!.processID;
        }
        return logs(cmd, sb, pid, values.follow === true);
      }
      case 'timeout': {
        if (positionals.length !== 2) throw new UsageError('usage: coppice sbx timeout <id> <seconds>');
        const [id, secs] = positionals as [string, string];
        const timeoutMs = secondsFlag('timeout', secs, 0)!;
        const sb = await Sandbox.get(id, conn());
        await sb.setTimeout(timeoutMs);
        if (cmd.json) return cmd.emitJson(await sb.getInfo().catch(() => ({ sandboxID: id, ended: true })));
        cmd.out(id);
        cmd.note(timeoutMs === 0 ? `${id} ends now` : `${id} ends in ${secs} s`);
        return;
      }
      default:
        throw new UsageError(`unknown command "${sub}"`);
    }
  });
}

/** Replay a command's kept output (both streams, raw), then stop, or with `follow` go on to its exit. */
async function logs(cmd: Cmd, sb: Sandbox, processID: string, follow: boolean): Promise<number> {
  let stream: ExecStream | undefined;
  let target = Infinity;
  const caughtUp = () => {
    if (!follow && stream && stream.offset >= target) stream.detach();
  };
  const write = (out: NodeJS.WritableStream) => (d: Uint8Array) => {
    out.write(d);
    caughtUp();
  };
  stream = sb.attach(processID, {
    onStdout: write(cmd.io.stdout),
    onStderr: write(cmd.io.stderr),
    onDropped: (bytes, at) => cmd.note(`(${bytes} bytes of output at offset ${at} are no longer kept)`),
  });
  await stream.ready;
  if (stream.attached?.running) target = stream.attached.outputBytes;
  caughtUp();
  try {
    await stream.exited;
  } catch (err) {
    if ((err as Error).message !== 'detached') throw err;
  }
  return EXIT.OK;
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
