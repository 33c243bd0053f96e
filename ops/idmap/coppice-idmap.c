/*
 * coppice-idmap: attach idmapped bind mounts (mount_setattr(MOUNT_ATTR_IDMAP), Linux >= 5.12).
 * runc 1.1 cannot make them and util-linux 2.38's mount has no X-mount.idmap, hence this helper.
 *
 *   coppice-idmap NS_FIRST HOST_FIRST COUNT SRC DST [SRC DST ...]
 *
 * A throwaway user namespace gets the uid and gid map "NS_FIRST HOST_FIRST COUNT"; each SRC tree is
 * cloned (open_tree), idmapped with that namespace and moved onto DST. A file owned by NS_FIRST+k
 * on disk then appears owned by HOST_FIRST+k through DST. Used for a jail sandbox's template (lower)
 * layer ("0 <range> 65536") and to copy a snapshot between two ranges ("<old> <new> 65536").
 * Exit 0 on success; otherwise a message on stderr, exit 1, and nothing of this call stays mounted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int die(const char *what, const char *arg) {
  fprintf(stderr, "coppice-idmap: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
  return 1;
}

static int parse_id(const char *s, unsigned long long max, unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v > max) return -1;
  *out = v;
  return 0;
}

static int write_map(pid_t pid, const char *file, const char *map) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, map, strlen(map));
  int saved = errno;
  close(fd);
  errno = saved;
  return n == (ssize_t)strlen(map) ? 0 : -1;
}

int main(int argc, char **argv) {
  unsigned long long ns_first, host_first, count;
  if (argc < 6 || (argc - 4) % 2 != 0 || parse_id(argv[1], 4294967294ULL, &ns_first) ||
      parse_id(argv[2], 4294967294ULL, &host_first) || parse_id(argv[3], 4294967295ULL, &count) || count == 0 ||
      ns_first + count > 4294967295ULL || host_first + count > 4294967295ULL) {
    fprintf(stderr, "usage: coppice-idmap NS_FIRST HOST_FIRST COUNT SRC DST [SRC DST ...]\n");
    return 2;
  }
  int ready[2], go[2];
  if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC)) return die("pipe", NULL);
  pid_t child = fork();
  if (child < 0) return die("fork", NULL);
  if (child == 0) {
    /* Holds the namespace open until the parent has idmapped every mount, then exits. */
    char b = unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
    if (write(ready[1], &b, 1) != 1) _exit(1);
    ssize_t r = read(go[0], &b, 1);
    _exit(r < 0);
  }
  close(ready[1]);
  close(go[0]);
  int rc = 1, attached = 0;
  char b = 0;
  if (read(ready[0], &b, 1) != 1 || b != 'y') {
    errno = b == 'n' ? EPERM : EIO;
    die("unshare(CLONE_NEWUSER)", NULL);
    goto out;
  }
  char map[96], nspath[64];
  snprintf(map, sizeof map, "%llu %llu %llu\n", ns_first, host_first, count);
  if (write_map(child, "uid_map", map)) { die("write uid_map", map); goto out; }
  if (write_map(child, "gid_map", map)) { die("write gid_map", map); goto out; }
  snprintf(nspath, sizeof nspath, "/proc/%d/ns/user", (int)child);
  int userns = open(nspath, O_RDONLY | O_CLOEXEC);
  if (userns < 0) { die("open", nspath); goto out; }
  for (int i = 4; i + 1 < argc; i += 2, attached++) {
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, argv[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0) { die("open_tree", argv[i]); goto undo; }
    struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (unsigned long long)userns };
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr)) { die("mount_setattr(MOUNT_ATTR_IDMAP)", argv[i]); close(tree); goto undo; }
    if (syscall(SYS_move_mount, tree, "", AT_FDCWD, argv[i + 1], MOVE_MOUNT_F_EMPTY_PATH)) { die("move_mount to", argv[i + 1]); close(tree); goto undo; }
    close(tree);
  }
  rc = 0;
  goto out;
undo:
  for (int j = 0; j < attached; j++) umount2(argv[5 + 2 * j], MNT_DETACH);
out:
  if (write(go[1], "x", 1) != 1) kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  return rc;
}
