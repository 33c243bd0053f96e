/* Commands' lives: fork into their own session and process group, with pipes or a PTY, as the
 * requested user; reaped; exit reported once after the output has ended (procio.c moves the bytes).
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
#include <unistd.h>

#include "proc.h"

struct proc *procs, *graveyard;
static struct start_req req; /* large: static, used only inside proc_start */

/* Commands that still have something to tell the connected gateway. */
int proc_count(void)
{
	int n = 0;
	for (struct proc *p = procs; p; p = p->next)
		n += !p->detached;
	return n;
}

struct proc *proc_find_any(uint32_t id)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

struct proc *proc_find(uint32_t id)
{
	struct proc *p = proc_find_any(id);
	return p && !p->detached ? p : NULL;
}

void xclose(int *fd)
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
	if (id == 0 || proc_find_any(id)) {
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

void maybe_finish(struct proc *p)
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

void proc_attach(uint32_t id)
{
	struct proc *p = proc_find_any(id);
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

void proc_list(uint32_t id)
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
