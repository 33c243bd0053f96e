// Wire types of the streaming exec WebSocket (the protocol is described in ./exec.ts). Types and
// constants only, no imports: the SDK shares this file with the gateway.

export const EXEC_WS_PROTOCOL = 'coppice.exec.v1';
/** Browsers cannot set headers on a WebSocket: they offer `coppice.key.<api key>` as a second subprotocol. */
export const KEY_PROTOCOL_PREFIX = 'coppice.key.';

/** First byte of every binary server frame. */
export const TAG_STDOUT = 1;
export const TAG_STDERR = 2;

/** Close codes: 1000 after the exit message; 4000 + HTTP status when a start/attach is refused. */
export const CLOSE_EXITED = 1000;
export const closeCodeFor = (status: number) => 4000 + status;

// ---- client -> server (JSON text frames; binary frames are stdin bytes) ----

export interface StartMessage {
  type: 'start';
  /** A shell string (run as `/bin/sh -c cmd`) or an exact argv: exactly one of the two. */
  cmd?: string;
  argv?: string[];
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  /** Kill the command after this long (0 or absent = no deadline). */
  timeoutMs?: number;
  /** Keep stdin open for this client (default false: stdin is closed at start, like E2B). */
  stdin?: boolean;
  /** Run on a terminal of this size (1..1000 each): one output stream (tag 1), TERM=xterm-256color unless env sets it. */
  pty?: { cols: number; rows: number };
}

export interface AttachMessage {
  type: 'attach';
  processID: string;
  /** Output offset to resume from (default: the oldest byte the gateway still keeps). */
  from?: number;
  /** Never hold the command back; skip (and be told) when falling behind the replay buffer. */
  lossy?: boolean;
}

export type ControlMessage =
  | { type: 'stdin'; data: string /* base64 */ }
  | { type: 'close_stdin' }
  | { type: 'signal'; signal: string }
  /** A command on a terminal: its new window size (1..1000 each). */
  | { type: 'resize'; cols: number; rows: number };

export type ClientMessage = StartMessage | AttachMessage | ControlMessage;

// ---- server -> client (JSON text frames; binary frames are output) ----

export interface ExitInfo {
  exitCode: number | null;
  signal: string | null;
  /** Why the gateway ended it: 'timeout' (deadline), 'killed' (sandbox destroyed/drained). */
  reason?: string;
  error?: { code: string; message: string };
}

export type ServerMessage =
  | { type: 'started'; processID: string; sandboxID: string }
  | { type: 'attached'; processID: string; sandboxID: string; from: number; dropped: number; running: boolean; outputBytes: number }
  | { type: 'dropped'; bytes: number; at: number }
  | ({ type: 'exit'; outputBytes: number } & ExitInfo)
  | { type: 'error'; code: number; error: string; message: string; field?: string };
