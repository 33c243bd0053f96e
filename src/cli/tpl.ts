// `coppice tpl list|reload`: the templates the gateway serves, and which backend serves each.
import { defaultIo, enter, run, UsageError, type Io } from './common.ts';
import type { GroupSpec } from './help.ts';

export const TPL: GroupSpec = {
  name: 'tpl',
  help: 'templates',
  aliases: ['template', 'templates'],
  subs: [
    { name: 'list', help: 'the templates, with the backend that serves each (jail | bhyve)', aliases: ['ls'] },
    { name: 'reload', help: 'rescan the template roots (running sandboxes are untouched)' },
  ],
};

export async function tplCommand(argv: string[], io: Io = defaultIo()): Promise<number> {
  const e = enter(TPL, argv, io);
  if (typeof e === 'number') return e;
  const { cmd, positionals } = e;
  const sub = e.sub.name;
  return run(cmd, async () => {
    if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    switch (sub) {
      case 'list': {
        const templates = await cmd.client.templates();
        if (cmd.json) return cmd.emitJson(templates);
        if (!templates.length) return cmd.note('no templates');
        cmd.out(cmd.table(['NAME', 'BACKEND', 'PATH'], templates.map((t) => [t.name, t.backend, t.path])));
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
