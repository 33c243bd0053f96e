// `coppice serve`: run the gateway until SIGINT/SIGTERM. First signal drains (503 to new work,
// sandboxes destroyed, pools drained); a second one exits at once.
import { isListenError, startApp, resolveApiKey } from '../app.ts';
import { ConfigError, parseServeArgs } from '../config.ts';
import { createLogger } from '../log.ts';
import { argsMessage, oneLine } from './common.ts';
import { serveUsage } from './serve-help.ts';

/** parseArgs' words, as ConfigError carries them, in the CLI's own. */
function configMessage(message: string): string {
  const code = /^Unknown option/.test(message)
    ? 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
    : /argument missing|does not take an argument/.test(message)
      ? 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE'
      : /Unexpected argument/.test(message)
        ? 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
        : undefined;
  return code ? argsMessage({ code, message }).replace('(see --help)', '(coppice serve --help)') : oneLine(message);
}

const LISTEN_WORDS: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'no such local address',
  EACCES: 'permission denied',
};

export async function serve(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(serveUsage());
    return 0;
  }
  let config;
  try {
    config = parseServeArgs(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`coppice serve: ${configMessage(err.message)}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  let apiKey;
  try {
    apiKey = resolveApiKey(config);
  } catch (err) {
    process.stderr.write(`coppice serve: ${(err as Error).message}\n`);
    return 2;
  }
  let app;
  try {
    app = await startApp(config, { logger, apiKey: apiKey.key });
  } catch (err) {
    // One line, and nothing left behind (startApp undoes what it set up before it throws).
    if (isListenError(err)) {
      process.stderr.write(`coppice serve: cannot listen on ${config.listen}: ${LISTEN_WORDS[err.code ?? ''] ?? err.code}\n`);
      return 2;
    }
    process.stderr.write(`coppice serve: ${oneLine((err as Error).message)}\n`);
    return 1;
  }
  // The key itself only when it was just generated (the operator has no other way to learn it);
  // a key the operator supplied is never echoed to a terminal or a log collector.
  const keyLine = apiKey.generated ? `coppice API key (${apiKey.source}): ${apiKey.key}` : `coppice API key from ${apiKey.source}`;
  process.stderr.write(`coppice listening on ${app.url}\n${keyLine}\n`);
  logger.info({ url: app.url, templatesRoot: config.templatesRoot, bhyveTemplatesRoot: config.bhyveTemplatesRoot }, 'listening');

  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals += 1;
    logger.warn({ signal: sig, count: signals }, signals === 1 ? 'draining (send again to force)' : 'forced stop');
    app.gateway.sigint();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const reason = await app.gateway.stopped;
  if (reason === 'forced') {
    logger.warn({ reason }, 'stopped');
    return 130;
  }
  await app.close();
  logger.info({ reason }, 'stopped');
  return reason === 'drained' ? 0 : 1;
}
