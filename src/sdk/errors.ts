// Typed errors for SDK callers: the gateway's JSON error body `{code, error, message, field?}`
// (code = HTTP status, error = stable string) becomes one of these, so callers can `instanceof`.
//
//   status  error (stable code)        class
//   400     bad_request                InvalidArgumentError   (.field names the bad field)
//   401     unauthorized               AuthenticationError
//   404     not_found                  NotFoundError
//   405     method_not_allowed         MethodNotAllowedError
//   409     conflict                   ConflictError          (wrong state: pause twice, exec while paused)
//   413     payload_too_large          PayloadTooLargeError   (an InvalidArgumentError)
//   429     too_many_requests          RateLimitError
//   500     internal                   InternalServerError
//   501     unsupported                UnsupportedError       ("… not supported on bhyve backend v1")
//   502     backend_failed             BackendError
//   503     draining | not_ready       UnavailableError       (.draining tells which)
//   504     timeout                    GatewayTimeoutError
//   507     insufficient_storage       InsufficientStorageError (the gateway's state disk is full)
//   —       (no answer / cut off)      ConnectionError        (code 'unreachable'; not a CoppiceApiError)
//   —       (a command exited non-zero) CommandExitError      (code 'command_exit'; commands.run only)
//
// All of them are a CoppiceError: catch that one class and switch on `.code`.

/** The gateway's stable error codes (src/errors.ts), plus the SDK's own for failures without an answer. */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'permission_denied'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'too_many_requests'
  | 'payload_too_large'
  | 'unsupported'
  | 'draining'
  | 'not_ready'
  | 'timeout'
  | 'backend_failed'
  | 'internal'
  | 'unreachable'
  | 'command_exit'
  // a status the gateway does not send (a proxy's page): `http_<status>`
  | (string & {});

/** The one class every SDK error is: `.code` says what went wrong. */
export class CoppiceError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

export class CoppiceApiError extends CoppiceError {
  /** HTTP status (or the 4000+status close code's status for WebSocket refusals). */
  readonly status: number;
  /** The request field at fault (400s). */
  readonly field?: string;
  constructor(status: number, code: ErrorCode, message: string, field?: string) {
    super(code, message);
    this.status = status;
    this.field = field;
  }
  /** The gateway's own error body shape. */
  toJSON(): { code: number; error: string; message: string; field?: string } {
    return { code: this.status, error: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) };
  }
}

export class InvalidArgumentError extends CoppiceApiError {}
export class PayloadTooLargeError extends InvalidArgumentError {}
export class AuthenticationError extends CoppiceApiError {}
/** 403: the sandbox's own permissions refused a file operation (files.*). */
export class PermissionDeniedError extends CoppiceApiError {}
export class NotFoundError extends CoppiceApiError {}
export class MethodNotAllowedError extends CoppiceApiError {}
export class ConflictError extends CoppiceApiError {}
export class RateLimitError extends CoppiceApiError {}
export class InternalServerError extends CoppiceApiError {}
export class UnsupportedError extends CoppiceApiError {}
export class BackendError extends CoppiceApiError {}
export class UnavailableError extends CoppiceApiError {
  /** True when the gateway is shutting down (as opposed to still starting). */
  get draining(): boolean {
    return this.code === 'draining';
  }
}
export class GatewayTimeoutError extends CoppiceApiError {}
export class InsufficientStorageError extends CoppiceApiError {}

/** The gateway could not be reached, or a stream ended without its exit. */
export class ConnectionError extends CoppiceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('unreachable', message, options);
  }
}

type ErrorClass = new (s: number, c: string, m: string, f?: string) => CoppiceApiError;

const BY_CODE: Record<string, ErrorClass> = {
  bad_request: InvalidArgumentError,
  unauthorized: AuthenticationError,
  permission_denied: PermissionDeniedError,
  not_found: NotFoundError,
  method_not_allowed: MethodNotAllowedError,
  conflict: ConflictError,
  payload_too_large: PayloadTooLargeError,
  too_many_requests: RateLimitError,
  internal: InternalServerError,
  unsupported: UnsupportedError,
  backend_failed: BackendError,
  draining: UnavailableError,
  not_ready: UnavailableError,
  timeout: GatewayTimeoutError,
  insufficient_storage: InsufficientStorageError,
};

const BY_STATUS: Record<number, ErrorClass> = {
  400: InvalidArgumentError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  405: MethodNotAllowedError,
  409: ConflictError,
  413: PayloadTooLargeError,
  429: RateLimitError,
  500: InternalServerError,
  501: UnsupportedError,
  502: BackendError,
  503: UnavailableError,
  504: GatewayTimeoutError,
  507: InsufficientStorageError,
};

/** Build the typed error for an error body (tolerates bodies that are not ours). */
export function errorFromBody(status: number, body: unknown): CoppiceApiError {
  const b = (body && typeof body === 'object' ? body : {}) as { error?: unknown; message?: unknown; field?: unknown };
  const code = typeof b.error === 'string' ? b.error : `http_${status}`;
  const message = typeof b.message === 'string' ? b.message : `HTTP ${status}`;
  const field = typeof b.field === 'string' ? b.field : undefined;
  // The stable code decides when it is one we know; the status otherwise (proxies, other servers).
  const Cls = BY_CODE[code] ?? BY_STATUS[status] ?? CoppiceApiError;
  return new Cls(status, code, message, field);
}
