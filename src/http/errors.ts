// The one mapping from an error code to HTTP, and from "anything thrown" to the error answered
// with. Shared by the edge and by surfaces mounted on it (E2B). Anything that is not a
// CoppiceError is internal (500): logged by the caller, never leaked.
import { CoppiceError, type ErrorCode } from '../errors.ts';

export const HTTP_STATUS: Record<ErrorCode, number> = {
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
  insufficient_storage: 507,
};

export const httpStatusOf = (code: ErrorCode): number => HTTP_STATUS[code] ?? 502;

/** The JSON error body every HTTP surface of coppice answers with. */
export interface ErrorBody {
  code: number;
  error: ErrorCode;
  message: string;
  field?: string;
}

export function errorBody(err: CoppiceError): ErrorBody {
  return { code: httpStatusOf(err.code), error: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) };
}

export function toHttpError(err: unknown): { error: CoppiceError; status: number; unexpected: boolean } {
  if (err instanceof CoppiceError && Object.hasOwn(HTTP_STATUS, err.code)) {
    return { error: err, status: HTTP_STATUS[err.code], unexpected: false };
  }
  if (err instanceof CoppiceError) {
    // A code outside the table (an errno that travelled as `code`): a backend failure, with its message.
    return { error: new CoppiceError('backend_failed', err.message, { field: err.field, cause: err }), status: 502, unexpected: true };
  }
  return { error: new CoppiceError('internal', 'internal error', { cause: err }), status: 500, unexpected: true };
}
