/* File operations, done by the agent itself inside the sandbox's mount namespace and root, with
 * the calling user's fsuid/fsgid and groups (so permissions and symlinks resolve exactly as they
 * would for that user's own processes; the kernel drops our fs capabilities while fsuid != 0). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

struct stream {
	struct stream *next;
	uint32_t id;
	int fd;
	int writing;          /* 1: a write into tmp, renamed over target at FEND */
	uint32_t win;
	struct cred cred;
	char *tmp, *target;
};

static struct stream *streams;

int cred_enter(const struct cred *c)
{
	gid_t g[AGENT_MAX_GROUPS];
	for (unsigned i = 0; i < c->ngroups; i++)
		g[i] = c->groups[i];
	if (setgroups(c->ngroups, g) < 0)
		return -1;
	setfsgid(c->gid);
	setfsuid(c->uid);
	if ((uint32_t)setfsuid((uid_t)-1) != c->uid || (uint32_t)setfsgid((gid_t)-1) != c->gid) {
		cred_leave();
		errno = EPERM;
		return -1;
	}
	return 0;
}

void cred_leave(void)
{
	setfsuid(0);
	setfsgid(0);
	setgroups(0, NULL);
}

static struct stream *find(uint32_t id)
{
	for (struct stream *s = streams; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void end_stream(struct stream *s, int discard)
{
	for (struct stream **pp = &streams; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	if (s->fd >= 0)
		close(s->fd);
	if (discard && s->tmp && cred_enter(&s->cred) == 0) {
		unlink(s->tmp);
		cred_leave();
	}
	free(s->tmp);
	free(s->target);
	free(s);
}

static void start_write(uint32_t id, struct cred *c, uint32_t mode, const char *path)
{
	char target[PATH_MAX], tmp[PATH_MAX + 32];
	if (write_target(path, target, sizeof target) < 0) {
		chan_error(id, errno, "%s: %s", path, strerror(errno));
		return;
	}
	struct stat st;
	if (!mode)
		mode = stat(target, &st) == 0 ? (st.st_mode & 07777) : 0644;
	if (stat(target, &st) == 0 && S_ISDIR(st.st_mode)) {
		chan_error(id, EISDIR, "%s: %s", path, strerror(EISDIR));
		return;
	}
	char *slash = strrchr(target, '/');
	static unsigned seq;
	snprintf(tmp, sizeof tmp, "%.*s/.%s.coppice-%d-%u", (int)(slash - target), target, slash + 1, getpid(), ++seq);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode & 07777);
	if (fd < 0) {
		int e = errno;
		/* name the user's path, not our temp file */
		chan_error(id, e, "%s: %s", path, strerror(e));
		return;
	}
	fchmod(fd, mode & 07777); /* exact mode, whatever the umask */
	struct stream *s = calloc(1, sizeof *s);
	if (!s || !(s->tmp = strdup(tmp)) || !(s->target = strdup(target))) {
		unlink(tmp);
		close(fd);
		if (s)
			free(s->tmp), free(s);
		chan_error(id, ENOMEM, "out of memory");
		return;
	}
	s->id = id;
	s->fd = fd;
	s->writing = 1;
	s->cred = *c;
	s->next = streams;
	streams = s;
	chan_ok(id);
}

static void write_frame(struct stream *s, uint8_t type, const uint8_t *b, size_t len)
{
	if (type == AG_FDATA) {
		while (len > 0) {
			ssize_t n = write(s->fd, b, len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				int e = n < 0 ? errno : EIO;
				chan_error(s->id, e, "%s: %s", s->target, strerror(e));
				end_stream(s, 1);
				return;
			}
			b += n;
			len -= (size_t)n;
		}
		return;
	}
	/* FEND: make it visible atomically */
	int fd = s->fd;
	s->fd = -1;
	if (close(fd) < 0 || cred_enter(&s->cred) < 0) {
		chan_error(s->id, errno, "%s: %s", s->target, strerror(errno));
		end_stream(s, 1);
		return;
	}
	int r = rename(s->tmp, s->target), e = errno;
	if (r == 0)
		send_entry(s->id, s->target, 0);
	cred_leave();
	if (r < 0)
		chan_error(s->id, e, "%s: %s", s->target, strerror(e));
	end_stream(s, r < 0);
}

int files_frame(uint8_t type, uint32_t id, const uint8_t *b, size_t len)
{
	struct stream *s = find(id);
	if (type == AG_FDATA || type == AG_FEND) {
		if (s && s->writing)
			write_frame(s, type, b, len);
		return 1; /* data for a write that already failed: dropped, the error was sent */
	}
	if (type == AG_CREDIT && s && !s->writing) {
		struct rd r;
		rd_init(&r, b, len);
		rd_u32(&r);
		uint32_t n = rd_u32(&r);
		if (!r.bad && s->win + (uint64_t)n <= 64u * AGENT_WINDOW)
			s->win += n;
		return 1;
	}
	if (type == AG_CANCEL && s) {
		end_stream(s, 1);
		chan_ok(id);
		return 1;
	}
	if (type < AG_FREAD || type > AG_REMOVE)
		return 0;
	if (s) {
		chan_error(id, EEXIST, "stream id %u is in use", id);
		return 1;
	}
	struct file_req f;
	if (parse_file_req(type, b, len, &f) < 0) {
		chan_error(id, EINVAL, "malformed file request (type 0x%02x)", type);
		return 1;
	}
	struct cred c = f.cred;
	uint32_t arg = f.arg;
	const char *path = f.path, *to = f.to;
	if (cred_enter(&c) < 0) {
		chan_error(id, errno, "cannot act as uid %u: %s", c.uid, strerror(errno));
		return 1;
	}
	int ok = 0, created = 0;
	struct stat st;
	switch (type) {
	case AG_FREAD: {
		/* regular files only: a FIFO or a device would block the one thread or never end */
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		if (fd >= 0 && fstat(fd, &st) < 0) {
			int e = errno;
			close(fd);
			fd = -1;
			errno = e;
		} else if (fd >= 0 && !S_ISREG(st.st_mode)) {
			close(fd);
			fd = -1;
			errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		}
		struct stream *n = fd >= 0 ? calloc(1, sizeof *n) : NULL;
		if (n) {
			n->id = id;
			n->fd = fd;
			n->win = AGENT_WINDOW;
			n->next = streams;
			streams = n;
			ok = 2; /* replies come from files_poll */
		} else if (fd >= 0) {
			close(fd);
			errno = ENOMEM;
		}
		break;
	}
	case AG_FWRITE:
		start_write(id, &c, arg, path);
		ok = 2;
		break;
	case AG_STAT:
		ok = send_entry(id, path, arg == 0) == 0 ? 2 : 0;
		break;
	case AG_LIST:
		if (arg > AGENT_MAX_DEPTH) {
			errno = EINVAL;
		} else if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
		} else if (access(path, R_OK | X_OK) == 0) {
			unsigned budget = AGENT_MAX_ENTRIES;
			if (list_dir(id, path, arg ? arg : 1, &budget) < 0) {
				errno = E2BIG; /* the entries sent so far, then the ERROR */
				break;
			}
			chan_send(AG_FEND, id, NULL, 0, NULL, 0);
			ok = 2;
		}
		break;
	case AG_MKDIR:
		ok = mkdir_p(path, arg ? arg & 07777 : 0755, &created) == 0;
		break;
	case AG_RENAME:
		ok = rename(path, to) == 0;
		break;
	case AG_REMOVE:
		if (lstat(path, &st) == 0)
			ok = (S_ISDIR(st.st_mode) ? nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) : unlink(path)) == 0;
		break;
	}
	int e = errno;
	cred_leave();
	if (ok == 1) {
		uint8_t v[4];
		put_u32(v, (uint32_t)created);
		chan_send(AG_OK, id, v, type == AG_MKDIR ? 4 : 0, NULL, 0);
	} else if (ok == 0) {
		chan_error(id, e, "%s: %s", path, strerror(e));
	}
	return 1;
}

/* Regular files never block: reads are pumped every round while there is credit and room. */
void files_poll(void)
{
	for (struct stream *s = streams, *next; s; s = next) {
		next = s->next;
		if (s->writing || s->win == 0 || !chan_room())
			continue;
		size_t want = s->win < AGENT_CHUNK ? s->win : AGENT_CHUNK;
		uint8_t *buf = chan_reserve(want);
		ssize_t n = read(s->fd, buf, want);
		if (n > 0) {
			s->win -= (uint32_t)n;
			chan_commit(AG_FDATA, s->id, (size_t)n);
			ps_busy();
		} else if (n == 0) {
			chan_send(AG_FEND, s->id, NULL, 0, NULL, 0);
			end_stream(s, 0);
		} else if (errno != EINTR && errno != EAGAIN) {
			chan_error(s->id, errno, "read: %s", strerror(errno));
			end_stream(s, 0);
		} else {
			ps_busy();
		}
	}
}

void files_disconnect(void)
{
	while (streams)
		end_stream(streams, 1);
}
