// `coppice tpl list|reload`: the templates the gateway serves, and which backend serves each.
import { Cmd, defaultIo, EXIT, EXIT_HELP, GLOBAL_HELP, parse, run, table, UsageError, type Io } from './common.ts';

export const TPL_USAGE = `usage: coppice tpl <command> [flags]

  list      the templates, with the backend that serves each (jail | bhyve)
  reload    rescan the template roots (running sandboxes are untouched)

${GLOBAL_HELP}
${EXIT_HELP}`;

export async function tplCommand(argv: string[], io: Io = defaultIo()): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h') {
    (sub === undefined ? io.stderr : io.stdout).write(TPL_USAGE);
    return sub === undefined ? EXIT.USAGE : EXIT.OK;
  }
  let parsed;
  try {
    parsed = parse(rest);
  } catch (err) {
    io.stderr.write(`coppice tpl ${sub}: ${(err as Error).message}\n`);
    return EXIT.USAGE;
  }
  const cmd = new Cmd(`tpl ${sub}`, io, parsed.values);
  if (parsed.values.help) {
    io.stdout.write(TPL_USAGE);
    return EXIT.OK;
  }
  return run(cmd, async () => {
    if (parsed.positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
    switch (sub) {
      case 'list':
      case 'ls': {
        const templates = await cmd.client.templates();
        if (cmd.json) return cmd.emitJson(templates);
        if (!templates.length) return cmd.note('no templates');
        cmd.out(table(['NAME', 'BACKEND', 'PATH'], templates.map((t) => [t.name, t.backend, t.path])));
        return;
      }
      case 'reload': {
        const done = cmd.progress('rescanning templates…');
        const r = await cmd.client.reloadTemplates().finally(done);
        if (cmd.json) return cmd.emitJson(r);
        cmd.out(`${r.templates.length} templates: ${r.templates.map((t) => `${t.name} (${t.backend})`).join(', ') || 'none'}`);
        for (const w of r.warnings) cmd.note(`warning: ${w}`);
        return;
      }
      default:
        throw new UsageError(`unknown command "${sub}" (try: list, reload)`);
    }
  });
}
