// `coppice snap ls|rm`: the snapshots `sbx snapshot` made (create from one: `sbx create --snapshot ID`).
import { Cmd, defaultIo, EXIT, EXIT_HELP, GLOBAL_HELP, parse, relative, run, table, UsageError, type Io } from './common.ts';

export const SNAP_USAGE = `usage: coppice snap <command> [flags]

  ls            the snapshots (id, source sandbox, template, size, age)
  rm <id>...    delete snapshots (exit code: the first failure's)

${GLOBAL_HELP}
${EXIT_HELP}`;

export async function snapCommand(argv: string[], io: Io = defaultIo()): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    (first === undefined ? io.stderr : io.stdout).write(SNAP_USAGE);
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const sub = first === 'list' ? 'ls' : first === 'delete' ? 'rm' : first;
  let parsed;
  try {
    parsed = parse(rest);
  } catch (err) {
    io.stderr.write(`coppice snap ${sub}: ${(err as Error).message}\n`);
    return EXIT.USAGE;
  }
  const { values, positionals } = parsed;
  const cmd = new Cmd(`snap ${sub}`, io, values);
  if (values.help) {
    io.stdout.write(SNAP_USAGE);
    return EXIT.OK;
  }
  return run(cmd, async () => {
    switch (sub) {
      case 'ls': {
        if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
        const snaps = await cmd.client.snapshots();
        if (cmd.json) return cmd.emitJson(snaps);
        if (!snaps.length) return cmd.note('no snapshots');
        cmd.out(
          table(
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
        throw new UsageError(`unknown command "${first}" (try: ls, rm)`);
    }
  });
}
