import { pino, type Logger } from 'pino';

export type { Logger };

/** One logger for the process; secrets never reach it (the auth layer logs no keys). */
export function createLogger(level: string = process.env.COPPICE_LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { svc: 'coppice' },
    redact: { paths: ['req.headers.authorization', 'req.headers["x-api-key"]', '*.apiKey', '*.envVars'], remove: true },
  });
}
