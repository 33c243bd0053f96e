/* Directory watches on one inotify instance (so thousands of watches cost one fd and one of the
 * user's inotify instances). Events follow fsnotify's mapping, which E2B's envd uses:
 * create/moved-to = CREATE, modify = WRITE, delete = REMOVE, moved-from = RENAME, attrib = CHMOD. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define MASK (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_ONLYDIR)

/* One (kernel watch, our watch) pair; the kernel hands out one wd per directory, shared by every
 * watch that covers it, so several of these may carry the same wd. */
struct mark {
	struct mark *next;
	int wd;
	uint32_t id;
	int recursive;
	char *rel; /* the directory relative to the watched root ("" for the root) */
	char *abs;
	struct cred cred;
};

static int ifd = -1;
static struct mark *marks;

static int add_mark(uint32_t id, int recursive, const struct cred *c, const char *abs, const char *rel);

static void add_tree(uint32_t id, const struct cred *c, const char *abs, const char *rel)
{
	unsigned depth = *rel ? 1 : 0;
	for (const char *q = rel; *q; q++)
		depth += *q == '/';
	if (depth >= AGENT_MAX_DEPTH)
		return; /* deeper directories are not watched (and the recursion stays bounded) */
	DIR *d = opendir(abs);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char a[PATH_MAX], r[PATH_MAX];
		struct stat st;
		if (snprintf(a, sizeof a, "%s/%s", abs, e->d_name) >= (int)sizeof a ||
		    snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name) >= (int)sizeof r)
			continue;
		if (lstat(a, &st) == 0 && S_ISDIR(st.st_mode))
			add_mark(id, 1, c, a, r);
	}
	closedir(d);
}

static int add_mark(uint32_t id, int recursive, const struct cred *c, const char *abs, const char *rel)
{
	int wd = inotify_add_watch(ifd, abs, MASK);
	if (wd < 0)
		return -1;
	struct mark *m = calloc(1, sizeof *m);
	if (!m || !(m->rel = strdup(rel)) || !(m->abs = strdup(abs))) {
		if (m)
			free(m->rel), free(m);
		errno = ENOMEM;
		return -1;
	}
	m->wd = wd;
	m->id = id;
	m->recursive = recursive;
	m->cred = *c;
	m->next = marks;
	marks = m;
	if (recursive)
		add_tree(id, c, abs, rel);
	return wd;
}

static void remove_marks(uint32_t id, int wd_only, int wd)
{
	for (struct mark **pp = &marks; *pp;) {
		struct mark *m = *pp;
		if ((wd_only && m->wd == wd) || (!wd_only && m->id == id)) {
			*pp = m->next;
			int shared = 0;
			for (struct mark *o = marks; o; o = o->next)
				if (o->wd == m->wd)
					shared = 1;
			if (!shared && !wd_only)
				inotify_rm_watch(ifd, m->wd);
			free(m->rel);
			free(m->abs);
			free(m);
		} else {
			pp = &m->next;
		}
	}
}

static void on_inotify(void *ctx, int fd, short rev)
{
	(void)ctx;
	(void)rev;
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n = read(fd, buf, sizeof buf);
	for (char *p = buf; n > 0 && p < buf + n;) {
		struct inotify_event *ev = (struct inotify_event *)p;
		p += sizeof *ev + ev->len;
		if (ev->mask & IN_IGNORED) {
			remove_marks(0, 1, ev->wd);
			continue;
		}
		uint32_t kind = ev->mask & (IN_CREATE | IN_MOVED_TO) ? AG_EV_CREATE
				: ev->mask & IN_MODIFY			? AG_EV_WRITE
				: ev->mask & IN_DELETE			? AG_EV_REMOVE
				: ev->mask & IN_MOVED_FROM		? AG_EV_RENAME
				: ev->mask & IN_ATTRIB			? AG_EV_CHMOD
									: 0;
		if (!kind || !ev->len)
			continue;
		/* marks may be added below (a new subdirectory): walk a snapshot of the matching ones */
		for (struct mark *m = marks; m; m = m->next) {
			if (m->wd != ev->wd)
				continue;
			char rel[PATH_MAX];
			if (snprintf(rel, sizeof rel, "%s%s%s", m->rel, *m->rel ? "/" : "", ev->name) >= (int)sizeof rel)
				continue;
			uint8_t k[4];
			put_u32(k, kind);
			chan_send(AG_EVENT, m->id, k, 4, rel, strlen(rel) + 1);
			if (m->recursive && kind == AG_EV_CREATE && (ev->mask & IN_ISDIR)) {
				char abs[PATH_MAX];
				if (snprintf(abs, sizeof abs, "%s/%s", m->abs, ev->name) < (int)sizeof abs &&
				    cred_enter(&m->cred) == 0) {
					add_mark(m->id, 1, &m->cred, abs, rel); /* prepends: the walk goes on from m */
					cred_leave();
				}
			}
		}
	}
}

int watch_frame(uint8_t type, uint32_t id, const uint8_t *b, size_t len)
{
	if (type == AG_CANCEL) {
		int found = 0;
		for (struct mark *m = marks; m; m = m->next)
			if (m->id == id)
				found = 1;
		if (!found)
			return 0;
		remove_marks(id, 0, 0);
		chan_ok(id);
		return 1;
	}
	if (type != AG_WATCH)
		return 0;
	struct file_req f;
	if (parse_file_req(type, b, len, &f) < 0) {
		chan_error(id, EINVAL, "malformed WATCH frame");
		return 1;
	}
	struct cred c = f.cred;
	uint32_t recursive = f.arg;
	const char *path = f.path;
	for (struct mark *m = marks; m; m = m->next)
		if (m->id == id) {
			chan_error(id, EEXIST, "watch id %u is in use", id);
			return 1;
		}
	if (ifd < 0 && (ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
		chan_error(id, errno, "inotify: %s", strerror(errno));
		return 1;
	}
	if (cred_enter(&c) < 0) {
		chan_error(id, errno, "cannot act as uid %u: %s", c.uid, strerror(errno));
		return 1;
	}
	/* the root itself must be watchable: its error is the caller's answer */
	int wd = add_mark(id, recursive != 0, &c, path, "");
	int e = errno;
	cred_leave();
	if (wd < 0)
		chan_error(id, e, "%s: %s", path, strerror(e));
	else
		chan_ok(id);
	return 1;
}

void watch_poll(void)
{
	if (ifd >= 0 && marks && chan_room())
		ps_add(ifd, POLLIN, on_inotify, NULL);
}

void watch_disconnect(void)
{
	while (marks)
		remove_marks(marks->id, 0, 0);
}
