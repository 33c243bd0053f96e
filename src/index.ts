// The package's main entry (`import ... from 'coppice'`): run a gateway in-process, plus the
// error hierarchy and the wire types. Clients want `coppice/sdk` instead.
export { startApp, resolveApiKey, type App, type AppDeps } from './app.ts';
export { parseServeArgs, type Config } from './config.ts';
export { createLogger } from './log.ts';
export { CoppiceError, ERROR_CODES, type ErrorCode } from './errors.ts';
export { HTTP_STATUS, errorBody, type ErrorBody } from './http/errors.ts';
export type * from './protocol/views.ts';
