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
//   —       (no answer / cut off)      ConnectionError        (not a CoppiceApiError)

export class CoppiceApiError extends Error {
  /** HTTP status (or the 4000+status close code's status for WebSocket refusals). */
  readonly status: number;
  /** Stable error string from the gateway: 'not_found', 'conflict', 'unauthorized', ... */
  readonly code: string;
  /** The request field at fault (400s). */
  readonly field?: string;
  constructor(status: number, code: string, message: string, field?: string) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
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
export class ConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConnectionError';
  }
}

type ErrorClass = new (s: number, c: string, m: string, f?: string) => CoppiceApiError;

const BY_CODE: Record<string, ErrorClass> = {
  bad_request: InvalidArgumentError,
  unauthorized: AuthenticationError,
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
