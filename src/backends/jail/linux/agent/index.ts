// coppice-agent client (see docs/agent.md). The Linux jail driver keeps one per sandbox (sandboxes.ts).
export { AgentClient, type AgentProcInfo, type AgentStats } from './client.ts';
export { AgentConnection, type AgentHello } from './connection.ts';
export { AgentProcess } from './process.ts';
export { AgentWatch, type WatchEvent, type WriteSource } from './files.ts';
export { AgentError } from './errors.ts';
export { FrameDecoder, ProtocolError, encodeHeader, encodeStart, type AgentCred, type AgentEntry, type Frame, type StartSpec } from './codec.ts';
export * as protocol from './protocol.ts';
