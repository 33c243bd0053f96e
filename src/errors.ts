// One error hierarchy with stable codes (the undici way). An error says WHAT went wrong, by a
// stable code; HOW that is answered (an HTTP status, a Connect code, a CLI exit code) is decided
// by the surface that answers: src/http/errors.ts for HTTP, src/e2b/rpc-errors.ts for Connect.

export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'too_many_requests'
  | 'payload_too_large'
  | 'insufficient_storage'
  | 'unsupported'
  | 'draining'
  | 'not_ready'
  | 'timeout'
  | 'backend_failed'
  | 'internal';

export const ERROR_CODES: readonly ErrorCode[] = [
  'bad_request',
  'unauthorized',
  'not_found',
  'method_not_allowed',
  'conflict',
  'too_many_requests',
  'payload_too_large',
  'insufficient_storage',
  'unsupported',
  'draining',
  'not_ready',
  'timeout',
  'backend_failed',
  'internal',
];

const KNOWN = new Set<string>(ERROR_CODES);
export const isErrorCode = (code: unknown): code is ErrorCode => typeof code === 'string' && KNOWN.has(code);

export class CoppiceError extends Error {
  readonly code: ErrorCode;
  /** The request field at fault, for bad_request. */
  readonly field?: string;
  /** Seconds after which a refused request may be retried (too_many_requests). */
  readonly retryAfterS?: number;
  constructor(code: ErrorCode, message: string, opts: { field?: string; cause?: unknown; retryAfterS?: number } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    // The name is the brand machines recognise (they import nothing from src/): see machines/types.ts.
    this.name = 'CoppiceError';
    this.code = code;
    this.field = opts.field;
    if (opts.retryAfterS !== undefined) this.retryAfterS = opts.retryAfterS;
  }
}

export const badRequest = (field: string, message: string) =>
  new CoppiceError('bad_request', `${field}: ${message}`, { field });
export const notFound = (what: string) => new CoppiceError('not_found', `${what} not found`);
export const conflict = (message: string) => new CoppiceError('conflict', message);
export const backendFailed = (message: string, cause?: unknown) =>
  new CoppiceError('backend_failed', message, { cause });
export const timeout = (message: string) => new CoppiceError('timeout', message);
/** The gateway's own state disk is full: nothing new can be made until space returns. */
export const insufficientStorage = (message: string, cause?: unknown) =>
  new CoppiceError('insufficient_storage', message, { cause });
export const tooManyRequests = (message: string, retryAfterS: number) =>
  new CoppiceError('too_many_requests', message, { retryAfterS });

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
  if (err instanceof CoppiceError) return { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'backend_failed', message };
}

export function fromErrorInfo(info: { code: string; message: string; field?: string }): CoppiceError {
  // A code we do not know (never expected: machines keep only ours) is a backend failure.
  const code: ErrorCode = isErrorCode(info.code) ? info.code : 'backend_failed';
  return new CoppiceError(code, info.message, { field: info.field });
}
