/*
 * coppice-agent: PID 1 of a jail sandbox and the gateway's one channel into it.
 *
 *   coppice-agent [--listen-fd N]          serve on listening socket N (default 3, from runc
 *                                          --preserve-fds 1); as PID 1 also reap and forward
 *   coppice-agent --bind PATH -- PROG ...  host side: bind+listen a unix socket at PATH (0600), make
 *                                          it fd 3 and exec PROG (the driver runs `runc create` so)
 *
 * Single-threaded, one poll() loop: signals arrive on a signalfd, children are reaped there.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

#define IDLE_TRIM_MS 100

static struct pollfd *pfds;
static poll_fn *pfns;
static void **pctx;
static size_t pn, pcap;
static int busy;

void ps_add(int fd, short events, poll_fn fn, void *ctx)
{
	if (pn == pcap) {
		size_t cap = pcap ? pcap * 2 : 64;
		struct pollfd *a = realloc(pfds, cap * sizeof *a);
		poll_fn *b = a ? realloc(pfns, cap * sizeof *b) : NULL;
		void **c = b ? realloc(pctx, cap * sizeof *c) : NULL;
		if (a)
			pfds = a;
		if (b)
			pfns = b;
		if (!c)
			return; /* out of memory: this fd sits out one round */
		pctx = c;
		pcap = cap;
	}
	pfds[pn] = (struct pollfd){.fd = fd, .events = events};
	pfns[pn] = fn;
	pctx[pn] = ctx;
	pn++;
}

void ps_busy(void) { busy = 1; }

void dispatch(uint8_t type, uint32_t id, const uint8_t *p, size_t len)
{
	if (type == AG_START) {
		proc_start(id, p, len);
		return;
	}
	if (type == AG_STATS) {
		stats_reply(id);
		return;
	}
	if (type == AG_PING) {
		chan_ok(id);
		return;
	}
	/* CREDIT and CANCEL ids may name a process, a file stream or a watch */
	if (type == AG_CREDIT && files_frame(type, id, p, len))
		return;
	if (proc_frame(type, id, p, len) || files_frame(type, id, p, len) || watch_frame(type, id, p, len))
		return;
	if (type == AG_CANCEL)
		chan_error(id, ENOENT, "nothing to cancel with id %u", id);
	else
		chan_error(id, ENOSYS, "unknown frame type 0x%02x", type);
}

static int sfd;
static int terminating;

static void on_signal(void *ctx, int fd, short rev)
{
	(void)ctx;
	(void)rev;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo == SIGCHLD)
			continue;
		/* SIGTERM/SIGINT/SIGHUP: pass it on (as PID 1 to everything in the sandbox), then leave once
		 * the children are gone; the runtime SIGKILLs what ignores it. */
		terminating = 1;
		if (getpid() == 1)
			kill(-1, (int)si.ssi_signo);
		else
			proc_signal_all((int)si.ssi_signo);
	}
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		proc_reaped(pid, st);
}

static void noop(int sig) { (void)sig; }

static int bind_exec(const char *path, char **argv)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof a.sun_path) {
		fprintf(stderr, "coppice-agent: socket path too long: %s\n", path);
		return 2;
	}
	strcpy(a.sun_path, path);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	unlink(path); /* a stale socket of a previous agent in this state dir */
	mode_t old = umask(077);
	int r = s < 0 ? -1 : bind(s, (struct sockaddr *)&a, sizeof a);
	umask(old);
	if (r < 0 || listen(s, 8) < 0 || (s != 3 && dup2(s, 3) < 0)) {
		fprintf(stderr, "coppice-agent: listen on %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (s != 3)
		close(s);
	execvp(argv[0], argv);
	fprintf(stderr, "coppice-agent: exec %s: %s\n", argv[0], strerror(errno));
	unlink(path);
	return 127;
}

int main(int argc, char **argv)
{
	int lfd = 3;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--bind") && i + 2 < argc && !strcmp(argv[i + 2], "--") && i + 3 < argc)
			return bind_exec(argv[i + 1], argv + i + 3);
		if (!strcmp(argv[i], "--listen-fd") && i + 1 < argc) {
			lfd = atoi(argv[++i]);
			continue;
		}
		fprintf(stderr, "usage: coppice-agent [--listen-fd N] | --bind PATH -- PROG [ARGS...]\n");
		return 2;
	}
	int type = 0;
	socklen_t tl = sizeof type;
	if (getsockopt(lfd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM) {
		fprintf(stderr, "coppice-agent: fd %d is not a listening stream socket\n", lfd);
		return 2;
	}
	/* Large buffers (the channel's, a command's stdin) are their own mappings, unmapped when freed:
	 * a fixed threshold, not glibc's adaptive one, which would keep them in the heap after a burst. */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024);
	mallopt(M_TRIM_THRESHOLD, 128 * 1024);
	/* Same-uid processes of the sandbox must not ptrace us or pidfd_getfd our channel. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (getpid() == 1)
		prctl(PR_SET_NAME, "coppice-init", 0, 0, 0);

	sigset_t set;
	sigemptyset(&set);
	int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		sigaddset(&set, sigs[i]);
		/* a real handler: PID 1 drops signals whose action is the default */
		struct sigaction sa = {.sa_handler = noop};
		sigaction(sigs[i], &sa, NULL);
	}
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		perror("coppice-agent: signalfd");
		return 1;
	}
	chan_setup(lfd);
	for (;;) {
		pn = 0;
		busy = 0;
		ps_add(sfd, POLLIN, on_signal, NULL);
		chan_poll();
		proc_poll();
		files_poll();
		watch_poll();
		if (terminating) {
			int st;
			pid_t pid;
			while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
				proc_reaped(pid, st);
			if (pid < 0 && errno == ECHILD && proc_count() == 0) {
				chan_flush();
				return 0;
			}
		}
		/* idle for IDLE_TRIM_MS with buffers a burst left behind: give them back */
		int timeout = busy ? 0 : chan_holding() ? IDLE_TRIM_MS : -1;
		int n = poll(pfds, pn, timeout);
		if (n < 0 && errno != EINTR)
			return 1;
		if (n == 0 && timeout > 0)
			chan_trim();
		for (size_t i = 0; n > 0 && i < pn; i++)
			if (pfds[i].revents)
				pfns[i](pctx[i], pfds[i].fd, pfds[i].revents);
	}
}
