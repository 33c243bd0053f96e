// `coppice snap ls|rm`: the snapshots `sbx snapshot` made (create from one: `sbx create --snapshot ID`).
import { defaultIo, enter, EXIT, relative, run, UsageError, type Io } from './common.ts';
import type { GroupSpec } from './help.ts';

export const SNAP: GroupSpec = {
  name: 'snap',
  help: 'snapshots',
  aliases: ['snapshot', 'snapshots'],
  subs: [
    { name: 'ls', help: 'the snapshots (id, source sandbox, template, size, age)', aliases: ['list'] },
    { name: 'rm', args: '<id>...', help: 'delete snapshots (exit code: the first failure\'s)', aliases: ['delete'] },
  ],
};

export async function snapCommand(argv: string[], io: Io = defaultIo()): Promise<number> {
  const e = enter(SNAP, argv, io);
  if (typeof e === 'number') return e;
  const { cmd, positionals } = e;
  const sub = e.sub.name;
  return run(cmd, async () => {
    switch (sub) {
      case 'ls': {
        if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
        const snaps = await cmd.client.snapshots();
        if (cmd.json) return cmd.emitJson(snaps);
        if (!snaps.length) return cmd.note('no snapshots');
        cmd.out(
          cmd.table(
            ['SNAPSHOT', 'SANDBOX', 'TEMPLATE', 'BACKEND', 'BYTES', 'CREATED'],
            snaps.map((s) => [s.snapshotID, s.sandboxID, s.template, s.backend, s.sizeBytes, relative(s.createdAt)]),
          ),
        );
        return;
      }
      case 'rm': {
        if (!positionals.length) throw new UsageError('missing snapshot id');
        let status: number = EXIT.OK;
        const removed: string[] = [];
        for (const id of positionals) {
          try {
            await cmd.client.deleteSnapshot(id);
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
      default:
        throw new UsageError(`unknown command "${sub}"`);
    }
  });
}
