// The one mapping from "anything thrown" to the error the edge answers with. A CoppiceError keeps
// its status; one whose code is not a known ErrorCode (an errno such as ENOENT that travelled
// through an actor reply as `code`) has no HTTP status, and answering with it would throw inside
// the error path (no response, and an unhandled rejection that ends the process): it becomes
// backend_failed (502) with its message. Anything else is internal (500), never leaked.
import { CoppiceError } from '../errors.ts';

export function toHttpError(err: unknown): { error: CoppiceError; unexpected: boolean } {
  if (err instanceof CoppiceError) {
    if (Number.isInteger(err.status) && err.status >= 400 && err.status <= 599) return { error: err, unexpected: false };
    return { error: new CoppiceError('backend_failed', err.message, { field: err.field, cause: err }), unexpected: true };
  }
  return { error: new CoppiceError('internal', 'internal error', { cause: err }), unexpected: true };
}
