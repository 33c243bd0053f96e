// `coppice pool ls|warm|drain`: warm pools (bhyve templates). `warm` shows the gateway's progress
// lines as they arrive (the NDJSON stream of POST /pool/:name/warm).
import type { ParseArgsConfig } from 'node:util';
import { Cmd, defaultIo, EXIT, EXIT_HELP, GLOBAL_HELP, numberFlag, parse, relative, run, table, UsageError, type Io } from './common.ts';

export const POOL_USAGE = `usage: coppice pool <command> [flags]

  ls                          the pools: template, backend, state, available and in-use slots
  warm <template> <count>     boot slots until <count> are ready (also: --count N); progress on
                              stderr (--json: NDJSON {"progress"} lines, then {"done"}, on stdout)
  drain <template>            destroy the pool's idle slots (the pool stays usable)

${GLOBAL_HELP}
${EXIT_HELP}`;

const OPTIONS: Record<string, ParseArgsConfig['options']> = {
  warm: { count: { type: 'string' } },
};

export async function poolCommand(argv: string[], io: Io = defaultIo()): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    (first === undefined ? io.stderr : io.stdout).write(POOL_USAGE);
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const sub = first === 'list' ? 'ls' : first;
  let parsed;
  try {
    parsed = parse(rest, OPTIONS[sub]);
  } catch (err) {
    io.stderr.write(`coppice pool ${sub}: ${(err as Error).message}\n`);
    return EXIT.USAGE;
  }
  const { values, positionals } = parsed;
  const cmd = new Cmd(`pool ${sub}`, io, values);
  if (values.help) {
    io.stdout.write(POOL_USAGE);
    return EXIT.OK;
  }
  return run(cmd, async () => {
    switch (sub) {
      case 'ls': {
        if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
        const pools = await cmd.client.pools();
        if (cmd.json) return cmd.emitJson(pools);
        if (!pools.length) return cmd.note('no pools (pools exist for bhyve templates)');
        cmd.out(
          table(
            ['TEMPLATE', 'BACKEND', 'STATE', 'AVAILABLE', 'IN_USE', 'WARMING', 'REFRESHED', 'PROGRESS'],
            pools.map((p) => [p.template, p.backend, p.state, p.available, p.inUse, p.warming, relative(p.refreshedAt), p.error ? `error: ${p.error}` : p.progress]),
          ),
        );
        return;
      }
      case 'warm': {
        const [template, countArg, ...extra] = positionals;
        if (!template) throw new UsageError('missing template');
        if (extra.length) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
        if (countArg !== undefined && values.count !== undefined) throw new UsageError('give the count once (argument or --count)');
        const count = numberFlag('count', countArg ?? values.count, { integer: true, min: 0 });
        if (count === undefined) throw new UsageError('missing count');
        const started = Date.now();
        cmd.note(`warming ${template} to ${count}…`);
        const r = await cmd.client.warmPool(template, count, {
          onProgress: (line) => {
            if (cmd.json) cmd.io.stdout.write(JSON.stringify({ progress: line }) + '\n');
            else cmd.io.stderr.write(`  ${template}: ${line}\n`);
          },
        });
        if (cmd.json) {
          cmd.io.stdout.write(JSON.stringify({ done: r }) + '\n');
          return;
        }
        cmd.out(`${r.template}: ${r.available} available, ${r.inUse} in use (${((Date.now() - started) / 1000).toFixed(1)} s)`);
        return;
      }
      case 'drain': {
        if (positionals.length !== 1) throw new UsageError(positionals.length ? 'expected one template' : 'missing template');
        const done = cmd.progress(`draining ${positionals[0]}…`);
        const r = await cmd.client.drainPool(positionals[0]!).finally(done);
        if (cmd.json) return cmd.emitJson(r);
        cmd.out(`${r.template}: drained (${r.available} available, ${r.inUse} in use)`);
        return;
      }
      default:
        throw new UsageError(`unknown command "${first}" (try: ls, warm, drain)`);
    }
  });
}
