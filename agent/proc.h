/* Internals shared by proc.c (lifecycle) and procio.c (output, stdin, control frames). */
#ifndef COPPICE_AGENT_PROC_H
#define COPPICE_AGENT_PROC_H

#include <sys/types.h>

#include "agent.h"

#define STDIN_MAX (4u << 20)

struct proc {
	struct proc *next;
	uint32_t id;
	pid_t pid;
	int pty;              /* out[0] is the master: output, stdin, resize */
	int in;               /* pipe write end (pipes only) */
	int out[2];           /* stdout/stderr read ends, -1 once at EOF */
	uint32_t win[2];      /* bytes we may still send per stream */
	uint8_t *inbuf;
	size_t inlen;
	int close_in;         /* STDIN_CLOSE received: close once inbuf drained */
	int hup;              /* pty: every slave fd is closed but the command is not reaped yet */
	int reaped, status;
	int detached;         /* the connection that started or attached it is gone: report nothing */
	int dead;             /* unlinked; freed at the next poll round (a callback may still hold it) */
};

extern struct proc *procs, *graveyard;

struct proc *proc_find_any(uint32_t id);
/* A command of this connection (started or attached by it). */
struct proc *proc_find(uint32_t id);
void xclose(int *fd);
/* Exit is reported once: after the command was reaped and its output streams have ended. */
void maybe_finish(struct proc *p);
void proc_attach(uint32_t id);
void proc_list(uint32_t id);

#endif
