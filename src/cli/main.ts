// The `coppice` command: `serve` runs the gateway; the rest are clients of it, built on the SDK
// (src/sdk). See docs/cli.md. This file loads nothing but ./help.ts until it knows the command,
// so `coppice --version` and usage errors start fast.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { EXIT_HELP, GLOBAL_FLAGS, GLOBAL_HELP, type GroupSpec } from './help.ts';

type Command = (argv: string[]) => Promise<number>;

const GROUPS: Record<string, () => Promise<{ spec: GroupSpec; run: Command }>> = {
  tpl: async () => {
    const m = await import('./tpl.ts');
    return { spec: m.TPL, run: (a) => m.tplCommand(a) };
  },
  sbx: async () => {
    const m = await import('./sbx.ts');
    return { spec: m.SBX, run: (a) => m.sbxCommand(a) };
  },
  pool: async () => {
    const m = await import('./pool.ts');
    return { spec: m.POOL, run: (a) => m.poolCommand(a) };
  },
  snap: async () => {
    const m = await import('./snap.ts');
    return { spec: m.SNAP, run: (a) => m.snapCommand(a) };
  },
};

const ALIASES: Record<string, string> = {
  template: 'tpl',
  templates: 'tpl',
  sandbox: 'sbx',
  sandboxes: 'sbx',
  pools: 'pool',
  snapshot: 'snap',
  snapshots: 'snap',
};

/** The package's version, from the package.json above this file (src/cli or dist/src/cli). */
export function version(): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'coppice' && pkg.version) return pkg.version;
    } catch {
      /* not here: one level up */
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

/**
 * Global flags may stand anywhere before a `--` (`coppice --url U sbx ls`, `coppice sbx ls --url
 * U`): they are taken out and put back just before the `--` (or at the end), where every
 * command's parser expects its flags. `--no-color` becomes NO_COLOR for whatever runs.
 */
export function hoistGlobals(argv: string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const dash = argv.indexOf('--');
  const head = dash < 0 ? argv : argv.slice(0, dash);
  const tail = dash < 0 ? [] : argv.slice(dash);
  const keep: string[] = [];
  const globals: string[] = [];
  for (let i = 0; i < head.length; i++) {
    const a = head[i]!;
    const name = /^--([a-z-]+)(=|$)/.exec(a)?.[1];
    const spec = name && name !== 'help' ? GLOBAL_FLAGS[name] : undefined;
    if (!spec) {
      keep.push(a);
      continue;
    }
    if (name === 'no-color') {
      env.NO_COLOR = '1';
      continue;
    }
    globals.push(a);
    if (spec.type === 'string' && !a.includes('=') && i + 1 < head.length) globals.push(head[++i]!);
  }
  return [...keep, ...globals, ...tail];
}

async function usage(): Promise<string> {
  const groups = await Promise.all(Object.values(GROUPS).map((g) => g()));
  const { serveFlagNames } = await import('./serve-help.ts');
  const flags = serveFlagNames().map((f) => `--${f}`);
  const wrapped: string[] = [];
  let line = '';
  for (const f of flags) {
    if (line && line.length + f.length + 1 > 86) {
      wrapped.push(line);
      line = '';
    }
    line += (line ? ' ' : '') + f;
  }
  if (line) wrapped.push(line);
  const rows = groups.map(({ spec }) => `  ${spec.name.padEnd(6)}  ${`${spec.help}:`.padEnd(11)} ${spec.subs.map((s) => s.name).join(' | ')}`);
  return `usage: coppice <command> [flags]     (coppice <command> --help: its commands and every flag)

gateway:
  serve   run the gateway; flags (coppice serve --help for each one):
${wrapped.map((l) => `          ${l}`).join('\n')}

clients (gateway from --url/--key or COPPICE_URL/COPPICE_API_KEY):
${rows.join('\n')}
  exec    run a command in a sandbox, streaming: coppice exec <sandboxID> [--json] -- cmd [args...]
          (exits with the command's status; 125 when coppice itself failed)

  --version    print the version

${GLOBAL_HELP}
${EXIT_HELP}`;
}

export async function main(argv: string[]): Promise<number> {
  const args = hoistGlobals(argv);
  const [first, ...rest] = args;
  const cmd = first === undefined ? undefined : (ALIASES[first] ?? first);
  switch (cmd) {
    case '--version':
    case '-V':
    case 'version':
      process.stdout.write(`coppice ${version()}\n`);
      return 0;
    case 'serve':
      return (await import('./serve.ts')).serve(rest);
    case 'exec':
      return (await import('./exec.ts')).execCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      (cmd === undefined ? process.stderr : process.stdout).write(await usage());
      return cmd === undefined ? 2 : 0;
  }
  const group = GROUPS[cmd];
  if (group) return (await group()).run(rest);
  process.stderr.write(`coppice: unknown command "${first}" (coppice --help lists them)\n`);
  return 2;
}
