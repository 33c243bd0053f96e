/* Path operations behind STAT, LIST, MKDIR, REMOVE and the target of FWRITE; called by files.c
 * with the caller's fs credentials already in place. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

/* ENTRY for path (lstat unless follow); errno-style result. */
int send_entry(uint32_t id, const char *path, int follow)
{
	struct stat st;
	if ((follow ? stat(path, &st) : lstat(path, &st)) < 0)
		return -1;
	char target[PATH_MAX] = "";
	if (S_ISLNK(st.st_mode)) {
		ssize_t n = readlink(path, target, sizeof target - 1);
		target[n > 0 ? n : 0] = 0;
	}
	uint8_t f[AG_ENTRY_FIXED] = {0};
	f[0] = S_ISREG(st.st_mode) ? 'f' : S_ISDIR(st.st_mode) ? 'd' : S_ISLNK(st.st_mode) ? 'l' : 'o';
	put_u32(f + 4, st.st_mode & 07777);
	put_u32(f + 8, st.st_uid);
	put_u32(f + 12, st.st_gid);
	put_u64(f + 16, (uint64_t)st.st_size);
	put_u64(f + 24, (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec);
	size_t pl = strlen(path) + 1, tl = strlen(target) + 1;
	uint8_t *p = chan_reserve(sizeof f + pl + tl);
	memcpy(p, f, sizeof f);
	memcpy(p + sizeof f, path, pl);
	memcpy(p + sizeof f + pl, target, tl);
	chan_commit(AG_ENTRY, id, sizeof f + pl + tl);
	return 0;
}

/* Entries under dir, depth levels down; -1 once *budget entries have been sent (more were left). */
int list_dir(uint32_t id, const char *dir, unsigned depth, unsigned *budget)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *e;
	int r = 0;
	while (r == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char path[PATH_MAX];
		int n = snprintf(path, sizeof path, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
		if (n < 0 || (size_t)n >= sizeof path)
			continue;
		if (*budget == 0) {
			r = -1;
			break;
		}
		if (send_entry(id, path, 0) < 0)
			continue;
		--*budget;
		struct stat st;
		if (depth > 1 && lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			r = list_dir(id, path, depth - 1, budget);
	}
	closedir(d);
	return r;
}

int mkdir_p(const char *path, mode_t mode, int *created)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	*created = 0;
	if (buf[0] != '/' || buf[1] == 0)
		return buf[0] == '/' ? 0 : (errno = EINVAL, -1);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;
			*p = 0;
			if (mkdir(buf, mode) == 0) {
				*created = 1;
			} else {
				struct stat st;
				if (errno != EEXIST || stat(buf, &st) < 0)
					return -1;
				if (!S_ISDIR(st.st_mode)) {
					errno = ENOTDIR;
					return -1;
				}
				*created = 0;
			}
			*p = c;
			if (!c)
				return 0;
			while (p[1] == '/')
				p++;
			if (!p[1])
				return 0;
		}
	}
}

int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

/* Where a write really lands: a symlink at the path is followed (as the user would writing to it). */
int write_target(const char *path, char *out, size_t cap)
{
	char cur[PATH_MAX];
	snprintf(cur, sizeof cur, "%s", path);
	for (int hops = 0; hops < 40; hops++) {
		char link[PATH_MAX];
		ssize_t n = readlink(cur, link, sizeof link - 1);
		if (n < 0) {
			if (errno != EINVAL && errno != ENOENT)
				return -1;
			snprintf(out, cap, "%s", cur);
			return 0;
		}
		link[n] = 0;
		if (link[0] == '/') {
			snprintf(cur, sizeof cur, "%s", link);
		} else {
			char *slash = strrchr(cur, '/');
			char next[PATH_MAX];
			int m = snprintf(next, sizeof next, "%.*s/%s", (int)(slash - cur), cur, link);
			if (m < 0 || (size_t)m >= sizeof next) {
				errno = ENAMETOOLONG;
				return -1;
			}
			memcpy(cur, next, (size_t)m + 1);
		}
	}
	errno = ELOOP;
	return -1;
}
