// The `coppice` command: `serve` runs the gateway; the rest are clients of it, built on the SDK
// (src/sdk). See docs/cli.md.
import { EXIT_HELP, GLOBAL_HELP } from './common.ts';

const USAGE = `usage: coppice <command> [flags]

gateway:
  serve   run the gateway (flags: --listen HOST:PORT --templates-root DIR --bhyve-templates-root DIR
          --bhyve-pool-size N --state-dir DIR --api-key-file FILE --jail-subnet CIDR --pool-ctl PATH
          --ssh-key PATH --drain-timeout SECONDS --log-level LEVEL)

clients (gateway from --url/--key or COPPICE_URL/COPPICE_API_KEY; \`coppice <group> --help\` for more):
  tpl     list | reload                                   templates and their backend
  sbx     create | ls | info | rm | pause | resume | exec | snapshot | fork
  pool    ls | warm | drain                               warm pools (bhyve templates)
  snap    ls | rm                                         snapshots
  exec    run a command in a sandbox, streaming: coppice exec <sandboxID> [--json] -- cmd [args...]
          (exits with the command's status; 125 when coppice itself failed)

${GLOBAL_HELP}
${EXIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return (await import('./serve.ts')).serve(rest);
    case 'exec':
      return (await import('./exec.ts')).execCommand(rest);
    case 'tpl':
    case 'template':
    case 'templates':
      return (await import('./tpl.ts')).tplCommand(rest);
    case 'sbx':
    case 'sandbox':
    case 'sandboxes':
      return (await import('./sbx.ts')).sbxCommand(rest);
    case 'pool':
    case 'pools':
      return (await import('./pool.ts')).poolCommand(rest);
    case 'snap':
    case 'snapshot':
    case 'snapshots':
      return (await import('./snap.ts')).snapCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      (cmd === undefined ? process.stderr : process.stdout).write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`coppice: unknown command "${cmd}"\n${USAGE}`);
      return 2;
  }
}
