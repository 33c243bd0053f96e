// The `coppice` command. `serve` runs the gateway; client commands arrive with the SDK.
import { serve } from './serve.ts';

const USAGE = `usage: coppice <command> [flags]

commands:
  serve   run the gateway (flags: --listen HOST:PORT --templates-root DIR --bhyve-templates-root DIR
          --bhyve-pool-size N --state-dir DIR --api-key-file FILE --jail-subnet CIDR --pool-ctl PATH
          --ssh-key PATH --drain-timeout SECONDS --log-level LEVEL)
  exec    run a command in a sandbox, streaming: coppice exec <sandboxID> [--json] -- cmd [args...]
          (gateway from --url/--key or COPPICE_URL/COPPICE_API_KEY; coppice exec --help for more)
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return serve(rest);
    case 'exec':
      return (await import('./exec.ts')).execCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`coppice: unknown command "${cmd}"\n${USAGE}`);
      return 2;
  }
}
