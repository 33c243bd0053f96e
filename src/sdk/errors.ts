// Typed errors for SDK callers: the gateway's JSON error body `{code, error, message, field?}`
// (code = HTTP status, error = stable string) becomes one of these, so callers can `instanceof`.

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
}

export class InvalidArgumentError extends CoppiceApiError {}
export class AuthenticationError extends CoppiceApiError {}
export class NotFoundError extends CoppiceApiError {}
export class ConflictError extends CoppiceApiError {}
export class UnsupportedError extends CoppiceApiError {}
export class UnavailableError extends CoppiceApiError {}
export class GatewayTimeoutError extends CoppiceApiError {}

/** The gateway could not be reached, or a stream ended without its exit. */
export class ConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConnectionError';
  }
}

const BY_STATUS: Record<number, new (s: number, c: string, m: string, f?: string) => CoppiceApiError> = {
  400: InvalidArgumentError,
  401: AuthenticationError,
  404: NotFoundError,
  409: ConflictError,
  501: UnsupportedError,
  503: UnavailableError,
  504: GatewayTimeoutError,
};

/** Build the typed error for an error body (tolerates bodies that are not ours). */
export function errorFromBody(status: number, body: unknown): CoppiceApiError {
  const b = (body && typeof body === 'object' ? body : {}) as { error?: unknown; message?: unknown; field?: unknown };
  const code = typeof b.error === 'string' ? b.error : `http_${status}`;
  const message = typeof b.message === 'string' ? b.message : `HTTP ${status}`;
  const field = typeof b.field === 'string' ? b.field : undefined;
  const Cls = BY_STATUS[status] ?? CoppiceApiError;
  return new Cls(status, code, message, field);
}
