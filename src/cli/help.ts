// The CLI's commands and flags as data: parseArgs options and every `--help` text come from the
// same tables, so a flag a command takes is a flag its help lists. No imports: `coppice --version`
// and `--help` load nothing else.

export interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** The value's placeholder in help (`--timeout S`). */
  arg?: string;
  help: string;
}

export interface SubSpec {
  name: string;
  /** Positional arguments as help shows them (`<id>...`). */
  args?: string;
  help: string;
  flags?: Record<string, FlagSpec>;
  aliases?: string[];
}

export interface GroupSpec {
  name: string;
  help: string;
  subs: SubSpec[];
  aliases?: string[];
}

/** Flags every client command takes, before or after the command words (`coppice --url U sbx ls`). */
export const GLOBAL_FLAGS: Record<string, FlagSpec> = {
  url: { type: 'string', arg: 'URL', help: 'gateway URL (default: $COPPICE_URL, else http://127.0.0.1:3000)' },
  key: { type: 'string', arg: 'KEY', help: 'API key (default: $COPPICE_API_KEY)' },
  json: { type: 'boolean', help: 'machine-readable output (errors too: {"code","error","message"} on stdout)' },
  'no-color': { type: 'boolean', help: 'no colours (also: NO_COLOR set; colours are only ever used on a terminal)' },
  help: { type: 'boolean', short: 'h', help: 'this help' },
};

export const EXIT_HELP = `exit codes:
  0 ok   1 generic/internal   2 usage or invalid argument (400)   3 not found (404)
  4 conflict/wrong state (409)   5 unsupported on this backend (501)   6 unavailable: starting/draining (503)
  7 auth: missing or wrong key (401)   8 timeout (504)   9 backend failed (502)   10 cannot connect to the gateway
`;

function flagLabel(name: string, f: FlagSpec): string {
  const long = `--${name}${f.type === 'string' ? ` ${f.arg ?? 'VALUE'}` : ''}`;
  return f.short ? `-${f.short}, ${long}` : long;
}

/** Flag lines, the help column aligned; repeatable flags say so. */
export function flagLines(flags: Record<string, FlagSpec>, indent = '  '): string {
  const rows = Object.entries(flags).map(([n, f]) => [flagLabel(n, f), f.help + (f.multiple ? ' (repeatable)' : '')] as const);
  const w = Math.max(0, ...rows.map(([l]) => l.length));
  return rows.map(([l, h]) => `${indent}${l.padEnd(w)}  ${h}`).join('\n') + '\n';
}

export const GLOBAL_HELP = `global flags (anywhere on the line):\n${flagLines(GLOBAL_FLAGS)}`;

function subLine(s: SubSpec): string {
  const flags = Object.entries(s.flags ?? {}).map(([n, f]) => `[${flagLabel(n, f)}]${f.multiple ? '...' : ''}`);
  return [s.name, s.args, ...flags].filter(Boolean).join(' ');
}

/** `coppice <group> --help`: every subcommand with every flag it takes. */
export function groupUsage(g: GroupSpec): string {
  const lines = g.subs.map((s) => {
    const head = subLine(s);
    return head.length < 22 ? `  ${head.padEnd(22)}${s.help}` : `  ${head}\n  ${''.padEnd(22)}${s.help}`;
  });
  const aliases = g.subs.filter((s) => s.aliases?.length).map((s) => `${s.aliases!.join('|')} = ${s.name}`);
  return (
    `usage: coppice ${g.name} <command> [flags]     (coppice ${g.name} <command> --help for one command)\n\n` +
    `${lines.join('\n')}\n` +
    (aliases.length ? `\naliases: ${aliases.join(', ')}\n` : '') +
    `\n${GLOBAL_HELP}\n${EXIT_HELP}`
  );
}

/** `coppice <group> <sub> --help`: that command, its flags, the global ones. */
export function subUsage(g: GroupSpec, s: SubSpec): string {
  const own = s.flags && Object.keys(s.flags).length ? `\nflags:\n${flagLines(s.flags)}` : '';
  return `usage: coppice ${g.name} ${[s.name, s.args].filter(Boolean).join(' ')} [flags]\n\n  ${s.help}\n${own}\n${GLOBAL_HELP}\n${EXIT_HELP}`;
}

/** parseArgs options for a command: its own flags and the global ones. */
export function parseOptions(flags: Record<string, FlagSpec> = {}): Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> {
  const out: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [n, f] of Object.entries({ ...GLOBAL_FLAGS, ...flags })) {
    out[n] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  }
  return out;
}

/** A subcommand by name or alias. */
export function findSub(g: GroupSpec, name: string): SubSpec | undefined {
  return g.subs.find((s) => s.name === name || s.aliases?.includes(name));
}
