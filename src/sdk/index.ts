// coppice SDK (npm package @coppice/sdk, packages/sdk): `import { Sandbox, CoppiceClient } from '@coppice/sdk'`.
//
//   const sb = await Sandbox.create('base', { url, apiKey });  // or COPPICE_URL / COPPICE_API_KEY
//   const r = await sb.exec('echo hi');                        // buffered (REST)
//   const s = sb.execStream(['python3', '-u', 'job.py'], { onStdout: (b) => process.stdout.write(b) });
//   const { exitCode } = await s.exited;                        // streamed (WebSocket)
//   for await (const { stream, data } of sb.execStream('ls -l')) ...
//   await sb.pause(); await sb.resume();
//   const snap = await sb.snapshot(); const copy = await sb.fork();
//   await sb.kill();
//   await Sandbox.list();
//
//   const gw = new CoppiceClient();                            // templates, pools, snapshots
//   await gw.templates(); await gw.warmPool('python-bhyve', 4, { onProgress: console.log });
//
// Errors: every gateway refusal is a CoppiceApiError subclass named after its meaning
// (NotFoundError, ConflictError, UnsupportedError, UnavailableError, ...) with `.status`, `.code`
// (the gateway's stable string) and `.field`; no answer at all is a ConnectionError.
export { Sandbox } from './sandbox.ts';
export type {
  AttachOptions,
  ClientOptions,
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
export { CoppiceClient } from './client.ts';
export type { Health, PoolInfo, PoolStats, ReloadResult, SnapshotInfo, TemplateInfo, WarmOptions } from './client.ts';
export { DEFAULT_URL, resolveConn } from './http.ts';
export { ExecStream } from './exec-stream.ts';
export type { ExitInfo, ExitResult, OutputChunk, StreamCallbacks } from './exec-stream.ts';
export {
  AuthenticationError,
  BackendError,
  CoppiceApiError,
  ConflictError,
  ConnectionError,
  errorFromBody,
  GatewayTimeoutError,
  InternalServerError,
  InvalidArgumentError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitError,
  UnavailableError,
  UnsupportedError,
} from './errors.ts';
