// Errors of the envd RPCs as Connect codes (the SDK maps not_found to FileNotFoundError /
// "process not found", already_exists to makeDir() === false, unavailable to "sandbox not running").
import { Code, ConnectError } from '@connectrpc/connect';
import { CoppiceError, type ErrorCode } from '../errors.ts';
import { FsError } from './sandbox-fs.ts';

export function connectCodeOf(e: FsError): Code {
  switch (e.kind) {
    case 'not_found':
      return Code.NotFound;
    case 'permission':
      return Code.PermissionDenied;
    case 'exists':
      return Code.AlreadyExists;
    case 'invalid':
    case 'not_dir':
    case 'is_dir':
      return Code.InvalidArgument;
    default:
      return Code.Internal;
  }
}

/** The Connect surface's one table: a gateway error code -> a Connect code. */
const CONNECT_CODE: Record<ErrorCode, Code> = {
  bad_request: Code.InvalidArgument,
  unauthorized: Code.Unauthenticated,
  not_found: Code.NotFound,
  method_not_allowed: Code.Unimplemented,
  conflict: Code.FailedPrecondition,
  too_many_requests: Code.ResourceExhausted,
  payload_too_large: Code.ResourceExhausted,
  insufficient_storage: Code.ResourceExhausted,
  unsupported: Code.Unimplemented,
  backend_failed: Code.Unavailable,
  draining: Code.Unavailable,
  not_ready: Code.Unavailable,
  timeout: Code.DeadlineExceeded,
  internal: Code.Internal,
};

export function asConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof FsError) return new ConnectError(err.message, connectCodeOf(err));
  if (err instanceof CoppiceError) return new ConnectError(err.message, CONNECT_CODE[err.code] ?? Code.Internal);
  return new ConnectError(err instanceof Error ? err.message : String(err), Code.Internal);
}
