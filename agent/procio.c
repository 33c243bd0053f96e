/* A running command's traffic: output pumped under credit into the channel, stdin written with
 * acknowledgements, and the control frames (stdin, resize, signal, credit, attach, list). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "proc.h"

/* Read one chunk of stream i within its credit; 0 = EOF/EIO (stream over), 1 = data or nothing yet. */
static int pump(struct proc *p, int i)
{
	size_t want = p->win[i] < AGENT_CHUNK ? p->win[i] : AGENT_CHUNK;
	if (want == 0 || !chan_room())
		return 1;
	uint8_t *buf = chan_reserve(want);
	ssize_t n = read(p->out[i], buf, want);
	if (n > 0) {
		p->win[i] -= (uint32_t)n;
		chan_commit(i == 0 ? AG_STDOUT : AG_STDERR, p->id, (size_t)n);
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return p->pty && p->reaped ? 0 : 1; /* pty: leader gone and nothing buffered = done */
	return 0; /* EOF, or EIO from a pty whose last slave closed */
}

static void on_out(void *ctx, int fd, short rev)
{
	struct proc *p = ctx;
	(void)rev;
	/* detached or gone since this round's poll set was made (its connection was replaced) */
	if (p->dead || p->detached || (fd != p->out[0] && fd != p->out[1]))
		return;
	int i = fd == p->out[0] ? 0 : 1;
	if (!pump(p, i)) {
		/* Closing a pty master hangs the terminal up: SIGHUP to a session leader that closed its
		 * fds but has not exited yet (cat does that). Keep it open, unpolled, until the reap. */
		if (p->pty && !p->reaped) {
			p->hup = 1;
			return;
		}
		xclose(&p->out[i]);
		maybe_finish(p);
	}
}

static void flush_stdin(struct proc *p)
{
	int fd = p->pty ? p->out[0] : p->in;
	size_t done = 0;
	while (fd >= 0 && done < p->inlen) {
		ssize_t n = write(fd, p->inbuf + done, p->inlen - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		/* EPIPE: the command stopped reading; count the bytes as consumed so the sender never stalls */
		done = p->inlen;
		if (!p->pty)
			xclose(&p->in);
	}
	if (done) {
		memmove(p->inbuf, p->inbuf + done, p->inlen - done);
		p->inlen -= done;
		uint8_t b[4];
		put_u32(b, (uint32_t)done);
		chan_send(AG_STDIN_ACK, p->id, b, 4, NULL, 0);
	}
	if (p->close_in && p->inlen == 0) {
		p->close_in = 0;
		if (p->pty) {
			struct termios t;
			char eof = tcgetattr(p->out[0], &t) == 0 ? (char)t.c_cc[VEOF] : 4;
			if (p->out[0] >= 0 && write(p->out[0], &eof, 1) < 0) {
			}
		} else {
			xclose(&p->in);
		}
	}
}

static void on_in(void *ctx, int fd, short rev)
{
	struct proc *p = ctx;
	(void)fd;
	(void)rev;
	if (!p->dead && !p->detached)
		flush_stdin(p);
}

void proc_poll(void)
{
	while (graveyard) {
		struct proc *g = graveyard;
		graveyard = g->next;
		free(g);
	}
	for (struct proc *p = procs, *next; p; p = next) {
		next = p->next;
		if (p->detached)
			continue;
		if (p->pty && p->reaped) {
			/* leader gone: drain what the terminal still holds; EAGAIN then means "over" */
			if (p->out[0] >= 0 && p->win[0] > 0 && chan_room()) {
				if (!pump(p, 0)) {
					xclose(&p->out[0]);
					maybe_finish(p); /* frees p */
					continue;
				}
				ps_busy();
			}
			continue;
		}
		for (int i = 0; i < 2; i++)
			if (p->out[i] >= 0 && p->win[i] > 0 && chan_room() && !p->hup)
				ps_add(p->out[i], POLLIN, on_out, p);
		int in = p->pty ? p->out[0] : p->in;
		if (p->inlen > 0 && in >= 0)
			ps_add(in, POLLOUT, on_in, p);
	}
}

static void deliver(struct proc *p, int sig)
{
	pid_t pg = p->pid;
	if (p->pty && p->out[0] >= 0) {
		pid_t fg = tcgetpgrp(p->out[0]);
		if (fg > 0)
			pg = fg;
	}
	if (kill(-pg, sig) < 0 && errno == ESRCH && !p->reaped)
		kill(p->pid, sig);
}

int proc_frame(uint8_t type, uint32_t id, const uint8_t *b, size_t len)
{
	if (type == AG_ATTACH)
		return proc_attach(id), 1;
	if (type == AG_PROCS)
		return proc_list(id), 1;
	if (type != AG_STDIN && type != AG_STDIN_CLOSE && type != AG_RESIZE && type != AG_SIGNAL && type != AG_CREDIT)
		return 0;
	/* a signal may go to a detached command too (the gateway can stop one it does not attach) */
	struct proc *p = type == AG_SIGNAL ? proc_find_any(id) : proc_find(id);
	struct rd r;
	rd_init(&r, b, len);
	if (!p) {
		/* late frames for a process that has exited are normal; only answer a signal */
		if (type == AG_SIGNAL)
			chan_error(id, ESRCH, "no process %u", id);
		return 1;
	}
	switch (type) {
	case AG_STDIN:
		if (p->close_in || p->inlen + len > STDIN_MAX) {
			chan_error(id, p->close_in ? EPIPE : ENOBUFS, "stdin %s", p->close_in ? "is closed" : "buffer full");
			return 1;
		}
		if (len == 0)
			return 1;
		uint8_t *nb = realloc(p->inbuf, p->inlen + len);
		if (!nb) {
			chan_error(id, ENOMEM, "out of memory");
			return 1;
		}
		p->inbuf = nb;
		memcpy(p->inbuf + p->inlen, b, len);
		p->inlen += len;
		flush_stdin(p);
		return 1;
	case AG_STDIN_CLOSE:
		p->close_in = 1;
		flush_stdin(p);
		return 1;
	case AG_RESIZE: {
		uint16_t cols = rd_u16(&r), rows = rd_u16(&r);
		if (r.bad || !cols || !rows) {
			chan_error(id, EINVAL, "malformed RESIZE frame");
		} else if (!p->pty) {
			chan_error(id, ENOTTY, "process %u has no terminal", id);
		} else if (p->out[0] >= 0) {
			struct winsize ws = {.ws_row = rows, .ws_col = cols};
			ioctl(p->out[0], TIOCSWINSZ, &ws); /* the kernel sends SIGWINCH to the foreground group */
		}
		return 1;
	}
	case AG_SIGNAL: {
		uint32_t sig = rd_u32(&r);
		if (r.bad || sig == 0 || sig >= NSIG)
			chan_error(id, EINVAL, "bad signal");
		else
			deliver(p, (int)sig);
		return 1;
	}
	case AG_CREDIT: {
		uint32_t s = rd_u32(&r), n = rd_u32(&r);
		if (r.bad || s > 1) {
			chan_error(id, EINVAL, "malformed CREDIT frame");
		} else if (p->win[s] + (uint64_t)n > 64u * AGENT_WINDOW) {
			chan_error(id, EINVAL, "credit over the limit");
		} else {
			p->win[s] += n;
		}
		return 1;
	}
	}
	return 0;
}
