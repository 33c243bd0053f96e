// coppice SDK (npm package @coppice/sdk, packages/sdk): `import { Sandbox } from '@coppice/sdk'`.
// The whole API with examples: docs/sdk.md.
//
//   const sb = await Sandbox.create('base', { timeoutMs: 600_000 });   // url/key: options or COPPICE_URL / COPPICE_API_KEY
//   const r = await sb.commands.run('echo hi');                       // { exitCode, stdout, stderr, ... }; CommandExitError if not 0
//   await sb.files.write('/tmp/a.txt', 'hi'); await sb.files.read('/tmp/a.txt'); await sb.files.list('/tmp');
//   const s = sb.execStream(['python3', '-u', 'job.py'], { onStdout: (b) => process.stdout.write(b) });
//   await sb.pause(); await Sandbox.connect(sb.sandboxID);             // connect resumes, as E2B's
//   const snap = await sb.snapshot(); const copy = await sb.fork();    // fork: a Sandbox, as create
//   await sb.kill();
//
// Units: every duration is milliseconds, named ...Ms. Errors: every one is a CoppiceError with a
// stable `.code` ('not_found', 'conflict', 'unreachable', 'command_exit', ...); gateway refusals
// are CoppiceApiError subclasses named after their meaning, with `.status` and `.field`.
export { Sandbox } from './sandbox.ts';
export type {
  AttachOptions,
  ClientOptions,
  ConnectOptions,
  CreateOptions,
  ExecOptions,
  ExecResult,
  ExecStreamOptions,
  ForkOptions,
  FromSnapshotOptions,
  ProcessInfo,
  SandboxInfo,
  SnapshotResult,
} from './sandbox.ts';
export { Commands, CommandExitError } from './commands.ts';
export type { CommandOptions, CommandResult } from './commands.ts';
export { Files } from './files.ts';
export type { EntryInfo, FileOptions, WriteInfo } from './files.ts';
export { CoppiceClient } from './client.ts';
export type { Health, PoolInfo, PoolStats, ReloadResult, SnapshotInfo, TemplateInfo, WarmOptions } from './client.ts';
export { DEFAULT_URL, resolveConn } from './http.ts';
export { ExecStream } from './exec-stream.ts';
export type { ExitInfo, ExitResult, OutputChunk, StreamCallbacks } from './exec-stream.ts';
export {
  AuthenticationError,
  BackendError,
  CoppiceApiError,
  CoppiceError,
  ConflictError,
  ConnectionError,
  errorFromBody,
  GatewayTimeoutError,
  InsufficientStorageError,
  InternalServerError,
  InvalidArgumentError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  UnavailableError,
  UnsupportedError,
} from './errors.ts';
export type { ErrorCode } from './errors.ts';
