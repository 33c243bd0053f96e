// Agent failures as CoppiceErrors: an ERROR frame carries the errno the agent saw inside the sandbox.
import { constants } from 'node:os';
import { CoppiceError, type ErrorCode } from '../../../../errors.ts';

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k] as [number, string]));

const CODES: Record<string, ErrorCode> = {
  ENOENT: 'not_found',
  ESRCH: 'not_found',
  EEXIST: 'conflict',
  ENOTEMPTY: 'conflict',
  EINVAL: 'bad_request',
  ENOTDIR: 'bad_request',
  EISDIR: 'bad_request',
  ENAMETOOLONG: 'bad_request',
  ENOTTY: 'bad_request',
  EMSGSIZE: 'payload_too_large',
};

export class AgentError extends CoppiceError {
  /** The errno inside the sandbox (EACCES, ENOENT, ...); undefined for connection-level failures. */
  readonly errno?: string;
  constructor(code: ErrorCode, message: string, errno?: string) {
    super(code, message);
    if (errno) this.errno = errno;
  }
}

export function fromErrorFrame(errno: number, message: string): AgentError {
  const name = ERRNO_NAMES.get(errno) ?? `E${errno}`;
  return new AgentError(CODES[name] ?? 'backend_failed', `agent: ${message}`, name);
}

export const connectionLost = (why: string) => new AgentError('backend_failed', `agent connection lost: ${why}`);
