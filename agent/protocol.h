/*
 * coppice-agent wire protocol (shared by nothing else; the TypeScript twin is
 * src/backends/jail/linux/agent/protocol.ts).
 *
 * One stream socket, frames in both directions:
 *   u32 length   payload bytes (little-endian), at most AGENT_MAX_PAYLOAD
 *   u8  type     AG_* below
 *   u8  flags    0 (reserved)
 *   u16 reserved 0
 *   u32 id       request / process / stream id chosen by the gateway (0 = connection)
 *   payload
 * Command output only ever travels inside a payload, so it cannot be mistaken for control.
 * Integers are little-endian; strings are NUL-terminated inside the payload.
 *
 * A "cred" block (uid, gid, supplementary groups) leads every request that touches the sandbox:
 *   u32 uid, u32 gid, u16 ngroups, u16 0, u32 groups[ngroups]
 */
#ifndef COPPICE_AGENT_PROTOCOL_H
#define COPPICE_AGENT_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#define AGENT_VERSION 1
#define AGENT_HEADER 12
#define AGENT_MAX_PAYLOAD (1u << 20)
#define AGENT_MAX_GROUPS 64
#define AGENT_MAX_ARGS 4096
/* LIST depth and recursive WATCH depth limits; LIST answers at most AGENT_MAX_ENTRIES entries. */
#define AGENT_MAX_DEPTH 64
#define AGENT_MAX_ENTRIES 100000
/* Initial output window per stream (bytes the agent may send before a CREDIT). */
#define AGENT_WINDOW (256u * 1024u)
/* Largest single output / file-data chunk the agent sends. */
#define AGENT_CHUNK (64u * 1024u)

enum agent_type {
	/* gateway -> agent */
	AG_START = 0x01,       /* cred, u16 cols, u16 rows (0 = no pty), u16 argc, u16 envc, cwd\0 argv\0.. env\0.. */
	AG_STDIN = 0x02,       /* bytes */
	AG_STDIN_CLOSE = 0x03, /* - (pty: sends the terminal's EOF character) */
	AG_RESIZE = 0x04,      /* u16 cols, u16 rows */
	AG_SIGNAL = 0x05,      /* u32 signo: to the process group (pty: the terminal's foreground group) */
	AG_CREDIT = 0x06,      /* u32 stream (0 stdout/pty/file, 1 stderr), u32 bytes */
	AG_FREAD = 0x10,       /* cred, path\0 -> FDATA* FEND | ERROR (credit-controlled) */
	AG_FWRITE = 0x11,      /* cred, u32 mode (0: keep existing or 0666&~022), path\0 -> OK; then FDATA*, FEND -> ENTRY */
	AG_STAT = 0x12,        /* cred, u32 nofollow, path\0 -> ENTRY | ERROR */
	AG_LIST = 0x13,        /* cred, u32 depth (<= MAX_DEPTH), path\0 -> ENTRY* FEND | ENTRY* ERROR */
	AG_MKDIR = 0x14,       /* cred, u32 mode, path\0 (mkdir -p) -> OK u32 created */
	AG_RENAME = 0x15,      /* cred, from\0 to\0 -> OK */
	AG_REMOVE = 0x16,      /* cred, path\0 (recursive) -> OK */
	AG_WATCH = 0x17,       /* cred, u32 recursive, path\0 -> OK, then EVENT* */
	AG_CANCEL = 0x18,      /* - : ends a watch / file read / file write with id -> OK */
	AG_STATS = 0x19,       /* - -> STATS */
	AG_PING = 0x1a,        /* - -> OK */
	AG_ATTACH = 0x1b,      /* - : take over a detached process -> OK u32 pid, u32 flags; then its output, EXIT */
	AG_PROCS = 0x1c,       /* - -> OK {u32 id, u32 pid, u32 flags}* ; flags: AG_PF_* */

	/* agent -> gateway */
	AG_HELLO = 0x80,   /* u32 version, u32 pid, "coppice-agent"\0 */
	AG_STARTED = 0x81, /* u32 pid (inside the sandbox) */
	AG_STDOUT = 0x82,  /* bytes (pty output too) */
	AG_STDERR = 0x83,  /* bytes */
	AG_EXIT = 0x84,    /* i32 code (-1 if signalled), i32 signo (0 if exited); exactly once */
	AG_STDIN_ACK = 0x85, /* u32 bytes written into the command's stdin */
	AG_OK = 0x90,      /* optional payload */
	AG_ERROR = 0x91,   /* i32 errno, message\0 */
	AG_FDATA = 0x92,   /* bytes (both directions) */
	AG_FEND = 0x93,    /* - (both directions) */
	AG_ENTRY = 0x94,   /* struct below, path\0, link target\0 */
	AG_EVENT = 0x95,   /* u32 kind (AG_EV_*), name\0 (relative to the watched dir) */
	AG_STATS_REPLY = 0x96, /* u64 cpu_usec, user_usec, system_usec, mem_current, mem_max (0 = none) */
};

enum agent_proc_flags { AG_PF_PTY = 1, AG_PF_EXITED = 2, AG_PF_DETACHED = 4 };

enum agent_event { AG_EV_CREATE = 1, AG_EV_WRITE = 2, AG_EV_REMOVE = 3, AG_EV_RENAME = 4, AG_EV_CHMOD = 5 };

/* ENTRY fixed part: u8 kind ('f','d','l','o'), u8 0, u16 0, u32 mode, u32 uid, u32 gid,
 * u64 size, i64 mtime_ns, then path\0 target\0 (target empty unless a symlink). */
#define AG_ENTRY_FIXED 32

struct frame_hdr {
	uint32_t len;
	uint8_t type;
	uint32_t id;
};

/* Bounds-checked payload reader: every get fails (returns -1, sets bad) instead of overrunning. */
struct rd {
	const uint8_t *p;
	size_t len;
	size_t off;
	int bad;
};

struct cred {
	uint32_t uid, gid;
	uint16_t ngroups;
	uint32_t groups[AGENT_MAX_GROUPS];
};

/* frame.c */
int frame_decode_hdr(const uint8_t *buf, size_t avail, struct frame_hdr *h);
int frame_next(const uint8_t *buf, size_t avail, struct frame_hdr *h, const uint8_t **payload);
void frame_encode_hdr(uint8_t *buf, uint8_t type, uint32_t id, uint32_t len);
void rd_init(struct rd *r, const uint8_t *p, size_t len);
uint16_t rd_u16(struct rd *r);
uint32_t rd_u32(struct rd *r);
const char *rd_str(struct rd *r);
int rd_cred(struct rd *r, struct cred *c);
void put_u16(uint8_t *p, uint16_t v);
void put_u32(uint8_t *p, uint32_t v);
void put_u64(uint8_t *p, uint64_t v);

/* Parsed AG_START payload; strings point into the payload. */
struct start_req {
	struct cred cred;
	uint16_t cols, rows;
	const char *cwd;
	uint16_t argc, envc;
	const char *argv[AGENT_MAX_ARGS + 1];
	const char *envp[AGENT_MAX_ARGS + 2]; /* room for a default TERM + NULL */
};
int parse_start(const uint8_t *p, size_t len, struct start_req *s);

/* Parsed file / watch request (AG_FREAD..AG_REMOVE, AG_WATCH); strings point into the payload. */
struct file_req {
	struct cred cred;
	uint32_t arg; /* FWRITE mode, STAT nofollow, LIST depth, MKDIR mode, WATCH recursive; else 0 */
	const char *path;
	const char *to; /* RENAME only */
};
int parse_file_req(uint8_t type, const uint8_t *p, size_t len, struct file_req *f);

#endif
