// Plain-node entry for `import ... from 'coppice/sdk'` (see lib/index.mjs). Types: src/sdk/index.ts.
import { tsImport } from 'tsx/esm/api';

const m = await tsImport('../src/sdk/index.ts', import.meta.url);
export const {
  Sandbox,
  Commands,
  CommandExitError,
  Files,
  CoppiceClient,
  DEFAULT_URL,
  resolveConn,
  ExecStream,
  AuthenticationError,
  BackendError,
  CoppiceApiError,
  CoppiceError,
  ConflictError,
  ConnectionError,
  errorFromBody,
  GatewayTimeoutError,
  InsufficientStorageError,
  InternalServerError,
  InvalidArgumentError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  UnavailableError,
  UnsupportedError,
} = m;
