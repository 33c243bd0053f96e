// coppice SDK: `import { Sandbox } from 'coppice/sdk'`.
//
//   const sb = await Sandbox.create('base', { url, apiKey });
//   const r = await sb.exec('echo hi');                        // buffered (REST)
//   const s = sb.execStream(['python3', '-u', 'job.py'], { onStdout: (b) => process.stdout.write(b) });
//   const { exitCode } = await s.exited;                        // streamed (WebSocket)
//   for await (const { stream, data } of sb.execStream('ls -l')) ...
//   await sb.kill();
export { Sandbox } from './sandbox.ts';
export type { AttachOptions, ClientOptions, CreateOptions, ExecOptions, ExecResult, ExecStreamOptions, ProcessInfo, SandboxInfo } from './sandbox.ts';
export { ExecStream } from './exec-stream.ts';
export type { ExitInfo, ExitResult, OutputChunk, StreamCallbacks } from './exec-stream.ts';
export {
  AuthenticationError,
  CoppiceApiError,
  ConflictError,
  ConnectionError,
  errorFromBody,
  GatewayTimeoutError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
  UnsupportedError,
} from './errors.ts';
