// `coppice pool ls|warm|drain`: warm pools (bhyve and jail templates). `warm` shows the gateway's progress
// lines as they arrive (the NDJSON stream of POST /pool/:name/warm).
import { defaultIo, enter, numberFlag, relative, run, UsageError, type Io } from './common.ts';
import type { GroupSpec } from './help.ts';

export const POOL: GroupSpec = {
  name: 'pool',
  help: 'warm pools',
  aliases: ['pools'],
  subs: [
    { name: 'ls', help: 'the pools: template, backend, state, available and in-use slots', aliases: ['list'] },
    {
      name: 'warm',
      args: '<template> <count>',
      help: 'boot slots until <count> are ready; progress on stderr (--json: NDJSON {"progress"} lines, then {"done"}, on stdout)',
      flags: { count: { type: 'string', arg: 'N', help: 'the count, instead of the argument' } },
    },
    { name: 'drain', args: '<template>', help: 'destroy the pool\'s idle slots (the pool stays usable)' },
  ],
};

export async function poolCommand(argv: string[], io: Io = defaultIo()): Promise<number> {
  const e = enter(POOL, argv, io);
  if (typeof e === 'number') return e;
  const { cmd, positionals } = e;
  const sub = e.sub.name;
  const values = cmd.values;
  return run(cmd, async () => {
    switch (sub) {
      case 'ls': {
        if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
        const pools = await cmd.client.pools();
        if (cmd.json) return cmd.emitJson(pools);
        if (!pools.length) return cmd.note('no pools (warm one: coppice pool warm <template> <count>)');
        cmd.out(
          cmd.table(
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
        throw new UsageError(`unknown command "${sub}"`);
    }
  });
}
