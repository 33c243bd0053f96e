// Errors of the envd RPCs as Connect codes (the SDK maps not_found to FileNotFoundError /
// "process not found", already_exists to makeDir() === false, unavailable to "sandbox not running").
import { Code, ConnectError } from '@connectrpc/connect';
import { CoppiceError } from '../errors.ts';
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

const BY_STATUS: Record<number, Code> = {
  400: Code.InvalidArgument,
  401: Code.Unauthenticated,
  404: Code.NotFound,
  409: Code.FailedPrecondition,
  429: Code.ResourceExhausted,
  501: Code.Unimplemented,
  502: Code.Unavailable,
  503: Code.Unavailable,
  504: Code.DeadlineExceeded,
};

export function asConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof FsError) return new ConnectError(err.message, connectCodeOf(err));
  if (err instanceof CoppiceError) return new ConnectError(err.message, BY_STATUS[err.status] ?? Code.Internal);
  return new ConnectError(err instanceof Error ? err.message : String(err), Code.Internal);
}
