/* The gateway's channel: one accepted connection at a time on the listening socket we were given
 * (a new connection replaces the old one, which is how a restarted gateway takes over). Output is
 * queued in one buffer and written without blocking; sources stop while it is full. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"

static int lfd = -1, cfd = -1;
static uint8_t *in, *out;
static size_t in_len, in_cap, out_off, out_len, out_cap;

static void die_oom(void)
{
	static const char m[] = "coppice-agent: out of memory\n";
	if (write(2, m, sizeof m - 1) < 0) {
	}
	_exit(111);
}

int chan_connected(void) { return cfd >= 0; }

int chan_room(void) { return cfd >= 0 && out_len - out_off < CHAN_BACKLOG_MAX; }

static void out_need(size_t n)
{
	if (out_off > 0 && out_off == out_len)
		out_off = out_len = 0;
	if (out_len + n <= out_cap)
		return;
	if (out_off > 0) {
		memmove(out, out + out_off, out_len - out_off);
		out_len -= out_off;
		out_off = 0;
		if (out_len + n <= out_cap)
			return;
	}
	size_t cap = out_cap ? out_cap : 64 * 1024;
	while (cap < out_len + n)
		cap *= 2;
	uint8_t *b = realloc(out, cap);
	if (!b)
		die_oom();
	out = b;
	out_cap = cap;
}

uint8_t *chan_reserve(size_t max)
{
	out_need(AGENT_HEADER + max);
	return out + out_len + AGENT_HEADER;
}

void chan_commit(uint8_t type, uint32_t id, size_t len)
{
	if (cfd < 0)
		return;
	frame_encode_hdr(out + out_len, type, id, (uint32_t)len);
	out_len += AGENT_HEADER + len;
}

void chan_send(uint8_t type, uint32_t id, const void *a, size_t alen, const void *b, size_t blen)
{
	if (cfd < 0)
		return;
	uint8_t *p = chan_reserve(alen + blen);
	if (alen)
		memcpy(p, a, alen);
	if (blen)
		memcpy(p + alen, b, blen);
	chan_commit(type, id, alen + blen);
}

void chan_ok(uint32_t id) { chan_send(AG_OK, id, NULL, 0, NULL, 0); }

void chan_error(uint32_t id, int err, const char *fmt, ...)
{
	char msg[512];
	uint8_t code[4];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof msg)
		n = sizeof msg - 1;
	put_u32(code, (uint32_t)err);
	chan_send(AG_ERROR, id, code, 4, msg, (size_t)n + 1);
}

static void drop(void)
{
	if (cfd < 0)
		return;
	close(cfd);
	cfd = -1;
	in_len = 0;
	out_off = out_len = 0;
	proc_disconnect();
	files_disconnect();
	watch_disconnect();
}

static void hello(void)
{
	uint8_t p[8];
	static const char name[] = "coppice-agent";
	put_u32(p, AGENT_VERSION);
	put_u32(p + 4, (uint32_t)getpid());
	chan_send(AG_HELLO, 0, p, sizeof p, name, sizeof name);
}

static void on_listen(void *ctx, int fd, short rev)
{
	(void)ctx;
	(void)rev;
	int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (c < 0)
		return;
	drop(); /* the newest connection wins: a restarted gateway replaces a dead one */
	cfd = c;
	hello();
}

static void parse(void)
{
	size_t off = 0;
	while (cfd >= 0) {
		struct frame_hdr h;
		const uint8_t *payload;
		int r = frame_next(in + off, in_len - off, &h, &payload);
		if (r < 0) {
			if (h.len > AGENT_MAX_PAYLOAD)
				chan_error(h.id, EMSGSIZE, "frame of %u bytes is over the limit of %u", h.len, AGENT_MAX_PAYLOAD);
			else
				chan_error(h.id, EPROTO, "frame header with reserved bytes set");
			/* the stream cannot be resynchronised: flush the error, then hang up */
			if (write(cfd, out + out_off, out_len - out_off) < 0) {
			}
			drop();
			return;
		}
		if (r == 0)
			break;
		dispatch(h.type, h.id, payload, h.len);
		off += AGENT_HEADER + h.len;
	}
	if (cfd < 0)
		return;
	memmove(in, in + off, in_len - off);
	in_len -= off;
}

static void on_conn(void *ctx, int fd, short rev)
{
	(void)ctx;
	if (fd != cfd)
		return; /* polled for a connection that a newer one replaced earlier in this round */
	if (rev & POLLOUT) {
		ssize_t n = send(fd, out + out_off, out_len - out_off, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			drop();
			return;
		}
		if (n > 0)
			out_off += (size_t)n;
	}
	if (rev & (POLLIN | POLLHUP | POLLERR)) {
		if (in_cap - in_len < 64 * 1024) {
			size_t cap = in_cap ? in_cap * 2 : 128 * 1024;
			if (cap > 2 * (AGENT_HEADER + AGENT_MAX_PAYLOAD))
				cap = 2 * (AGENT_HEADER + AGENT_MAX_PAYLOAD);
			if (cap > in_cap) {
				uint8_t *b = realloc(in, cap);
				if (!b)
					die_oom();
				in = b;
				in_cap = cap;
			}
		}
		ssize_t n = read(fd, in + in_len, in_cap - in_len);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			drop();
			return;
		}
		if (n > 0) {
			in_len += (size_t)n;
			parse();
		}
	}
}

/* Before exiting: what is queued (the last EXITs) goes out, waiting at most a second for the reader. */
void chan_flush(void)
{
	while (cfd >= 0 && out_off < out_len) {
		ssize_t n = send(cfd, out + out_off, out_len - out_off, MSG_NOSIGNAL);
		if (n > 0) {
			out_off += (size_t)n;
			continue;
		}
		struct pollfd p = {.fd = cfd, .events = POLLOUT};
		if ((n < 0 && errno != EAGAIN && errno != EINTR) || poll(&p, 1, 1000) <= 0)
			return;
	}
}

/* Buffers grown by a burst are returned to the kernel once idle (RSS is paid per sandbox). */
int chan_holding(void) { return out_cap > 64 * 1024 || in_cap > 0; }

void chan_trim(void)
{
	if (out_off == out_len) {
		free(out);
		out = NULL;
		out_cap = out_off = out_len = 0;
	}
	if (in_len == 0) {
		free(in);
		in = NULL;
		in_cap = 0;
	}
}

void chan_setup(int listen_fd)
{
	lfd = listen_fd;
	fcntl(lfd, F_SETFD, FD_CLOEXEC);
	fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
}

void chan_poll(void)
{
	ps_add(lfd, POLLIN, on_listen, NULL);
	if (cfd < 0)
		return;
	/* Reading stops while our own output is backed up (the gateway is not reading). */
	short ev = out_len > out_off ? POLLOUT : 0;
	if (out_len - out_off < 4 * CHAN_BACKLOG_MAX)
		ev |= POLLIN;
	ps_add(cfd, ev, on_conn, NULL);
}
