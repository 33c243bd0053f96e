/* Commands: fork, own session and process group, pipes or a PTY, output under credit, stdin with
 * acknowledgements, resize, signals to the group, exit reported once after the output has ended.
 * A command outlives the connection that started it: it is detached (its output waits in its pipe,
 * nothing is reported) until a later connection ATTACHes it by id. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

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

static struct proc *procs, *graveyard;
static struct start_req req; /* large: static, used only inside proc_start */

/* Commands that still have something to tell the connected gateway. */
int proc_count(void)
{
	int n = 0;
	for (struct proc *p = procs; p; p = p->next)
		n += !p->detached;
	return n;
}

static struct proc *find_any(uint32_t id)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

/* A command of this connection (started or attached by it). */
static struct proc *find(uint32_t id)
{
	struct proc *p = find_any(id);
	return p && !p->detached ? p : NULL;
}

static void xclose(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* In the child: never returns. Failures are reported like a shell would (stderr, 126/127). */
static void child(struct start_req *s, int pty_slave, int fds[3])
{
	sigset_t none;
	sigemptyset(&none);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	if (pty_slave >= 0) {
		ioctl(pty_slave, TIOCSCTTY, 0);
		fds[0] = fds[1] = fds[2] = pty_slave;
	}
	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			_exit(126);
	/* everything else we hold (the channel, other commands' pipes) is CLOEXEC, but close early */
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	umask(022);
	gid_t groups[AGENT_MAX_GROUPS];
	for (unsigned i = 0; i < s->cred.ngroups; i++)
		groups[i] = s->cred.groups[i];
	if (setgroups(s->cred.ngroups, groups) < 0 || setgid(s->cred.gid) < 0 || setuid(s->cred.uid) < 0) {
		dprintf(2, "coppice-agent: cannot become uid %u: %s\n", s->cred.uid, strerror(errno));
		_exit(126);
	}
	if (chdir(s->cwd) < 0) {
		dprintf(2, "coppice-agent: chdir %s: %s\n", s->cwd, strerror(errno));
		_exit(126);
	}
	const char *file = s->argv[0];
	int err = ENOENT;
	if (strchr(file, '/')) {
		execve(file, (char *const *)s->argv, (char *const *)s->envp);
		err = errno;
	} else {
		/* PATH from the command's own environment, as runc exec does */
		const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
		for (unsigned i = 0; s->envp[i]; i++)
			if (!strncmp(s->envp[i], "PATH=", 5))
				path = s->envp[i] + 5;
		char buf[4096];
		int seen_eacces = 0;
		for (const char *p = path;; p++) {
			const char *e = strchrnul(p, ':');
			int n = snprintf(buf, sizeof buf, "%.*s%s%s", (int)(e - p), p, e == p ? "" : "/", file);
			if (n > 0 && (size_t)n < sizeof buf) {
				execve(buf, (char *const *)s->argv, (char *const *)s->envp);
				if (errno == EACCES)
					seen_eacces = 1;
				else if (errno != ENOENT && errno != ENOTDIR)
					err = errno;
			}
			if (!*e)
				break;
			p = e;
		}
		if (seen_eacces && err == ENOENT)
			err = EACCES;
	}
	dprintf(2, "coppice-agent: exec %s: %s\n", file, err == ENOENT ? "command not found" : strerror(err));
	_exit(err == ENOENT ? 127 : 126);
}

static int has_env(const struct start_req *s, const char *key, size_t klen)
{
	for (unsigned i = 0; i < s->envc; i++)
		if (!strncmp(s->envp[i], key, klen))
			return 1;
	return 0;
}

void proc_start(uint32_t id, const uint8_t *payload, size_t len)
{
	if (parse_start(payload, len, &req) < 0) {
		chan_error(id, EINVAL, "malformed START frame");
		return;
	}
	if (id == 0 || find_any(id)) {
		chan_error(id, EEXIST, "process id %u is in use", id);
		return;
	}
	struct proc *p = calloc(1, sizeof *p);
	if (!p) {
		chan_error(id, ENOMEM, "out of memory");
		return;
	}
	p->id = id;
	p->in = p->out[0] = p->out[1] = -1;
	p->win[0] = p->win[1] = AGENT_WINDOW;
	int slave = -1, cfds[3] = {-1, -1, -1}, pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
	if (req.cols) {
		static char term[] = "TERM=xterm-256color";
		if (!has_env(&req, "TERM=", 5))
			req.envp[req.envc++] = term, req.envp[req.envc] = NULL;
		int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		char name[64];
		if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof name) != 0 ||
		    (slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
			chan_error(id, errno, "pty: %s", strerror(errno));
			if (m >= 0)
				close(m);
			free(p);
			return;
		}
		struct winsize ws = {.ws_row = req.rows, .ws_col = req.cols};
		ioctl(m, TIOCSWINSZ, &ws);
		if (fchown(slave, req.cred.uid, (gid_t)-1) < 0) {
		}
		p->pty = 1;
		p->out[0] = m;
		p->win[1] = 0;
	} else {
		if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0) {
			chan_error(id, errno, "pipe: %s", strerror(errno));
			goto fail;
		}
		cfds[0] = pin[0], cfds[1] = pout[1], cfds[2] = perr[1];
		p->in = pin[1], p->out[0] = pout[0], p->out[1] = perr[0];
	}
	pid_t pid = fork();
	if (pid < 0) {
		chan_error(id, errno, "fork: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0)
		child(&req, slave, cfds);
	p->pid = pid;
	if (slave >= 0)
		close(slave);
	xclose(&pin[0]);
	xclose(&pout[1]);
	xclose(&perr[1]);
	for (int i = 0; i < 2; i++)
		if (p->out[i] >= 0)
			fcntl(p->out[i], F_SETFL, O_NONBLOCK | fcntl(p->out[i], F_GETFL));
	if (p->in >= 0)
		fcntl(p->in, F_SETFL, O_NONBLOCK | fcntl(p->in, F_GETFL));
	p->next = procs;
	procs = p;
	uint8_t b[4];
	put_u32(b, (uint32_t)pid);
	chan_send(AG_STARTED, id, b, 4, NULL, 0);
	return;
fail:
	for (int i = 0; i < 2; i++) {
		xclose(&pin[i]);
		xclose(&pout[i]);
		xclose(&perr[i]);
	}
	if (slave >= 0)
		close(slave);
	free(p);
}

static void unlink_proc(struct proc *p)
{
	for (struct proc **pp = &procs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	xclose(&p->in);
	xclose(&p->out[0]);
	xclose(&p->out[1]);
	free(p->inbuf);
	p->inbuf = NULL;
	p->dead = 1;
	p->next = graveyard;
	graveyard = p;
}

/* Exit is reported once: after the command was reaped and its output streams have ended. */
static void maybe_finish(struct proc *p)
{
	if (!p->reaped || p->out[0] >= 0 || p->out[1] >= 0 || p->detached)
		return;
	{
		uint8_t b[8];
		int code = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
		int sig = WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0;
		put_u32(b, (uint32_t)code);
		put_u32(b + 4, (uint32_t)sig);
		chan_send(AG_EXIT, p->id, b, 8, NULL, 0);
	}
	unlink_proc(p);
}

void proc_reaped(pid_t pid, int status)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->pid == pid) {
			p->reaped = 1;
			p->status = status;
			maybe_finish(p);
			return;
		}
}

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

static void attach(uint32_t id)
{
	struct proc *p = find_any(id);
	if (!p) {
		chan_error(id, ESRCH, "no process %u", id);
		return;
	}
	if (!p->detached) {
		chan_error(id, EALREADY, "process %u is attached to this connection", id);
		return;
	}
	/* a fresh window: what the previous connection had not acknowledged is its own loss */
	p->detached = 0;
	p->win[0] = AGENT_WINDOW;
	p->win[1] = p->pty ? 0 : AGENT_WINDOW;
	uint8_t b[8];
	put_u32(b, (uint32_t)p->pid);
	put_u32(b + 4, (uint32_t)(p->pty ? AG_PF_PTY : 0) | (p->reaped ? AG_PF_EXITED : 0));
	chan_send(AG_OK, id, b, sizeof b, NULL, 0);
	maybe_finish(p);
}

static void list_procs(uint32_t id)
{
	size_t n = 0;
	for (struct proc *p = procs; p; p = p->next)
		n++;
	if (n > AGENT_MAX_PAYLOAD / 12)
		n = AGENT_MAX_PAYLOAD / 12;
	uint8_t *b = chan_reserve(n * 12), *q = b;
	for (struct proc *p = procs; p && (size_t)(q - b) < n * 12; p = p->next, q += 12) {
		put_u32(q, p->id);
		put_u32(q + 4, (uint32_t)p->pid);
		put_u32(q + 8, (uint32_t)(p->pty ? AG_PF_PTY : 0) | (p->reaped ? AG_PF_EXITED : 0) | (p->detached ? AG_PF_DETACHED : 0));
	}
	chan_commit(AG_OK, id, n * 12);
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
		return attach(id), 1;
	if (type == AG_PROCS)
		return list_procs(id), 1;
	if (type != AG_STDIN && type != AG_STDIN_CLOSE && type != AG_RESIZE && type != AG_SIGNAL && type != AG_CREDIT)
		return 0;
	/* a signal may go to a detached command too (the gateway can stop one it does not attach) */
	struct proc *p = type == AG_SIGNAL ? find_any(id) : find(id);
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

/* The gateway went away: its commands go on, detached, until a later connection attaches them. */
void proc_disconnect(void)
{
	for (struct proc *p = procs; p; p = p->next)
		p->detached = 1;
}

void proc_signal_all(int sig)
{
	for (struct proc *p = procs; p; p = p->next)
		if (!p->reaped)
			kill(-p->pid, sig);
}
