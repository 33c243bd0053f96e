// coppice-agent's wire protocol, the TypeScript twin of agent/protocol.h (read that file for the
// payload layouts). One stream socket, frames both ways: u32 length (LE), u8 type, 3 reserved zero
// bytes, u32 id, payload. Command output only ever travels inside a payload.

export const AGENT_VERSION = 1;
export const HEADER = 12;
export const MAX_PAYLOAD = 1 << 20;
export const MAX_GROUPS = 64;
export const MAX_ARGS = 4096;
/** Output bytes the agent may send per stream before it needs CREDIT. */
export const WINDOW = 256 * 1024;
/** Largest output / file chunk the agent sends; also what we send per STDIN / FDATA frame. */
export const CHUNK = 64 * 1024;

export const T = {
  // gateway -> agent
  START: 0x01,
  STDIN: 0x02,
  STDIN_CLOSE: 0x03,
  RESIZE: 0x04,
  SIGNAL: 0x05,
  CREDIT: 0x06,
  FREAD: 0x10,
  FWRITE: 0x11,
  STAT: 0x12,
  LIST: 0x13,
  MKDIR: 0x14,
  RENAME: 0x15,
  REMOVE: 0x16,
  WATCH: 0x17,
  CANCEL: 0x18,
  STATS: 0x19,
  PING: 0x1a,
  ATTACH: 0x1b,
  PROCS: 0x1c,
  // agent -> gateway
  HELLO: 0x80,
  STARTED: 0x81,
  STDOUT: 0x82,
  STDERR: 0x83,
  EXIT: 0x84,
  STDIN_ACK: 0x85,
  OK: 0x90,
  ERROR: 0x91,
  FDATA: 0x92,
  FEND: 0x93,
  ENTRY: 0x94,
  EVENT: 0x95,
  STATS_REPLY: 0x96,
} as const;

/** AG_PF_* flags of ATTACH / PROCS replies. */
export const PF = { PTY: 1, EXITED: 2, DETACHED: 4 } as const;

export const EVENT_KINDS = { 1: 'create', 2: 'write', 3: 'remove', 4: 'rename', 5: 'chmod' } as const;
export type WatchEventKind = (typeof EVENT_KINDS)[keyof typeof EVENT_KINDS];

/** Fixed part of an ENTRY payload (then path\0 target\0). */
export const ENTRY_FIXED = 32;
