/* The sandbox's own cgroup as it sees it at /sys/fs/cgroup: v2 files, or the v1 controllers runc
 * bind-mounts on a hybrid host. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* Whole small file into buf (NUL-terminated); no stdio: scanf alone would add 40 kB to every agent. */
static int slurp(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

static int parse_u64(const char *p, uint64_t *v)
{
	if (*p < '0' || *p > '9')
		return -1; /* "max", empty */
	uint64_t x = 0;
	for (; *p >= '0' && *p <= '9'; p++)
		x = x * 10 + (uint64_t)(*p - '0');
	*v = x;
	return 0;
}

static int read_u64(const char *path, uint64_t *v)
{
	char buf[64];
	return slurp(path, buf, sizeof buf) < 0 ? -1 : parse_u64(buf, v);
}

/* "key value" lines: returns the value of key scaled by mul. */
static int read_key(const char *path, const char *key, uint64_t mul, uint64_t *v)
{
	char buf[4096];
	if (slurp(path, buf, sizeof buf) < 0)
		return -1;
	size_t kl = strlen(key);
	for (char *line = buf; *line;) {
		char *end = strchrnul(line, '\n');
		if (!strncmp(line, key, kl) && line[kl] == ' ' && parse_u64(line + kl + 1, v) == 0) {
			*v *= mul;
			return 0;
		}
		line = *end ? end + 1 : end;
	}
	return -1;
}

void stats_reply(uint32_t id)
{
	uint64_t cpu = 0, user = 0, sys = 0, mem = 0, max = 0;
	if (read_key("/sys/fs/cgroup/cpu.stat", "usage_usec", 1, &cpu) == 0) {
		read_key("/sys/fs/cgroup/cpu.stat", "user_usec", 1, &user);
		read_key("/sys/fs/cgroup/cpu.stat", "system_usec", 1, &sys);
		read_u64("/sys/fs/cgroup/memory.current", &mem);
		read_u64("/sys/fs/cgroup/memory.max", &max); /* "max" fails to parse: 0 = none */
	} else {
		long hz = sysconf(_SC_CLK_TCK);
		uint64_t us_per_tick = hz > 0 ? 1000000u / (uint64_t)hz : 10000;
		if (read_u64("/sys/fs/cgroup/cpuacct/cpuacct.usage", &cpu) == 0 ||
		    read_u64("/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", &cpu) == 0)
			cpu /= 1000;
		if (read_key("/sys/fs/cgroup/cpuacct/cpuacct.stat", "user", us_per_tick, &user) < 0)
			read_key("/sys/fs/cgroup/cpu,cpuacct/cpuacct.stat", "user", us_per_tick, &user);
		if (read_key("/sys/fs/cgroup/cpuacct/cpuacct.stat", "system", us_per_tick, &sys) < 0)
			read_key("/sys/fs/cgroup/cpu,cpuacct/cpuacct.stat", "system", us_per_tick, &sys);
		read_u64("/sys/fs/cgroup/memory/memory.usage_in_bytes", &mem);
		read_u64("/sys/fs/cgroup/memory/memory.limit_in_bytes", &max);
		if (max >= (1ull << 62))
			max = 0;
	}
	uint8_t b[40];
	put_u64(b, cpu);
	put_u64(b + 8, user);
	put_u64(b + 16, sys);
	put_u64(b + 24, mem);
	put_u64(b + 32, max);
	chan_send(AG_STATS_REPLY, id, b, sizeof b, NULL, 0);
}
