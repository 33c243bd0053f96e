// One error hierarchy with stable codes (the undici way). The edge maps `status` to HTTP;
// `code` is a stable machine-readable string for SDKs and CLIs.

export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
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
  | 'internal';

const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  too_many_requests: 429,
  internal: 500,
  unsupported: 501,
  backend_failed: 502,
  draining: 503,
  not_ready: 503,
  timeout: 504,
};

export class CoppiceError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** The request field at fault, for 400s. */
  readonly field?: string;
  constructor(code: ErrorCode, message: string, opts: { field?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CoppiceError';
    this.code = code;
    this.status = STATUS[code];
    this.field = opts.field;
  }
  toJSON(): { code: number; error: ErrorCode; message: string; field?: string } {
    return { code: this.status, error: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) };
  }
}

export const badRequest = (field: string, message: string) =>
  new CoppiceError('bad_request', `${field}: ${message}`, { field });
export const notFound = (what: string) => new CoppiceError('not_found', `${what} not found`);
export const conflict = (message: string) => new CoppiceError('conflict', message);
export const backendFailed = (message: string, cause?: unknown) =>
  new CoppiceError('backend_failed', message, { cause });
export const timeout = (message: string) => new CoppiceError('timeout', message);

/** The seed's single shape for every operation a backend does not implement. */
export const unsupported = (operation: string, backend: string) =>
  new CoppiceError('unsupported', `${operation} not supported on ${backend} backend v1`);

/** Serializable form carried inside machine events and replies. */
export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  field?: string;
}

export function toErrorInfo(err: unknown): ErrorInfo {
  if (err instanceof CoppiceError) return { code: err.code, message: err.message, field: err.field };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'backend_failed', message };
}

export function fromErrorInfo(info: ErrorInfo): CoppiceError {
  // A code we do not know (never expected: machines keep only ours) is a backend failure.
  const code: ErrorCode = info.code in STATUS ? info.code : 'backend_failed';
  return new CoppiceError(code, info.message, { field: info.field });
}
