/*
 * Fuzz harness for the agent's frame parser (frame.c): a byte stream is split into frames exactly
 * as chan.c does, and every payload goes through every decoder the agent has for untrusted input.
 * Invariants are checked with abort(); buffers are exact-size heap copies so ASan sees any overrun.
 *
 *   libFuzzer (clang):  clang -fsanitize=fuzzer,address,undefined -DLIBFUZZER ... fuzz_frame.c frame.c
 *   built-in driver:    fuzz_frame [seed] [iterations]   deterministic mutations of built-in seeds
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../protocol.h"

static struct start_req req;

#define REQUIRE(c)                                                                     \
	do {                                                                           \
		if (!(c)) {                                                            \
			fprintf(stderr, "fuzz_frame: invariant broken: %s (line %d)\n", #c, __LINE__); \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* s is a NUL-terminated string lying wholly inside [p, p+len). */
static void inside(const uint8_t *p, size_t len, const char *s)
{
	REQUIRE(s && (const uint8_t *)s >= p && (const uint8_t *)s < p + len);
	REQUIRE(memchr(s, 0, len - (size_t)((const uint8_t *)s - p)) != NULL);
}

static void payload(uint8_t type, const uint8_t *p, size_t len)
{
	if (parse_start(p, len, &req) == 0) {
		REQUIRE(req.argc > 0 && req.argc <= AGENT_MAX_ARGS && req.envc <= AGENT_MAX_ARGS);
		REQUIRE((req.cols == 0) == (req.rows == 0) && req.cred.ngroups <= AGENT_MAX_GROUPS);
		inside(p, len, req.cwd);
		REQUIRE(req.cwd[0] == '/');
		for (unsigned i = 0; i < req.argc; i++)
			inside(p, len, req.argv[i]);
		for (unsigned i = 0; i < req.envc; i++)
			inside(p, len, req.envp[i]);
		REQUIRE(req.argv[req.argc] == NULL && req.envp[req.envc] == NULL && req.argv[0][0]);
	}
	const uint8_t ftypes[] = {AG_FREAD, AG_FWRITE, AG_STAT, AG_LIST, AG_MKDIR, AG_RENAME, AG_REMOVE, AG_WATCH, type};
	for (size_t i = 0; i < sizeof ftypes; i++) {
		struct file_req f;
		if (parse_file_req(ftypes[i], p, len, &f) == 0) {
			inside(p, len, f.path);
			REQUIRE(f.path[0] == '/');
			REQUIRE((ftypes[i] == AG_RENAME) == (f.to != NULL));
			if (f.to)
				inside(p, len, f.to);
		}
	}
	/* the fixed-size requests (RESIZE, SIGNAL, CREDIT) and the ERROR/ENTRY shapes */
	struct rd r;
	rd_init(&r, p, len);
	rd_u16(&r), rd_u16(&r), rd_u32(&r);
	while (!r.bad)
		rd_str(&r);
	REQUIRE(r.off <= len);
}

static int one(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	size_t off = 0;
	for (;;) {
		struct frame_hdr h;
		const uint8_t *p = NULL;
		int r = frame_next(buf + off, size - off, &h, &p);
		if (r <= 0)
			break;
		REQUIRE(h.len <= AGENT_MAX_PAYLOAD && p == buf + off + AGENT_HEADER && size - off >= AGENT_HEADER + h.len);
		uint8_t *copy = malloc(h.len ? h.len : 1);
		if (!copy)
			break;
		memcpy(copy, p, h.len);
		payload(h.type, copy, h.len);
		free(copy);
		off += AGENT_HEADER + h.len;
	}
	REQUIRE(off <= size);
	free(buf);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return one(data, size); }

#ifndef LIBFUZZER
/* xorshift64*: the run is a pure function of the seed */
static uint64_t rng;
static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

#define MAXIN (1u << 16)
struct in {
	uint8_t b[MAXIN];
	size_t n;
};

static void add(struct in *s, const void *p, size_t n)
{
	if (s->n + n > MAXIN)
		return;
	memcpy(s->b + s->n, p, n);
	s->n += n;
}
static void add_u16(struct in *s, uint16_t v)
{
	uint8_t b[2];
	put_u16(b, v);
	add(s, b, 2);
}
static void add_u32(struct in *s, uint32_t v)
{
	uint8_t b[4];
	put_u32(b, v);
	add(s, b, 4);
}
static void add_str(struct in *s, const char *v) { add(s, v, strlen(v) + 1); }

/* Frame with payload built by the caller after hdr(): patch the length when done. */
static size_t hdr(struct in *s, uint8_t type, uint32_t id)
{
	uint8_t h[AGENT_HEADER];
	frame_encode_hdr(h, type, id, 0);
	size_t at = s->n;
	add(s, h, sizeof h);
	return at;
}
static void done(struct in *s, size_t at) { put_u32(s->b + at, (uint32_t)(s->n - at - AGENT_HEADER)); }
static void cred(struct in *s, uint16_t ng)
{
	add_u32(s, 1000), add_u32(s, 1000), add_u16(s, ng), add_u16(s, 0);
	for (unsigned i = 0; i < ng; i++)
		add_u32(s, 10 + i);
}

/* A stream of every request the gateway sends, well formed. */
static void seed_stream(struct in *s)
{
	s->n = 0;
	size_t at = hdr(s, AG_START, 1);
	cred(s, 2), add_u16(s, 80), add_u16(s, 24), add_u16(s, 3), add_u16(s, 1);
	add_str(s, "/root"), add_str(s, "sh"), add_str(s, "-c"), add_str(s, "echo hi"), add_str(s, "TERM=dumb");
	done(s, at);
	at = hdr(s, AG_STDIN, 1), add(s, "input\n", 6), done(s, at);
	at = hdr(s, AG_RESIZE, 1), add_u16(s, 120), add_u16(s, 40), done(s, at);
	at = hdr(s, AG_SIGNAL, 1), add_u32(s, 2), done(s, at);
	at = hdr(s, AG_CREDIT, 1), add_u32(s, 0), add_u32(s, 65536), done(s, at);
	at = hdr(s, AG_STDIN_CLOSE, 1), done(s, at);
	at = hdr(s, AG_FWRITE, 2), cred(s, 0), add_u32(s, 0644), add_str(s, "/tmp/f"), done(s, at);
	at = hdr(s, AG_FDATA, 2), add(s, "file body", 9), done(s, at);
	at = hdr(s, AG_FEND, 2), done(s, at);
	at = hdr(s, AG_FREAD, 3), cred(s, 1), add_str(s, "/tmp/f"), done(s, at);
	at = hdr(s, AG_RENAME, 4), cred(s, 0), add_str(s, "/a"), add_str(s, "/b"), done(s, at);
	at = hdr(s, AG_LIST, 5), cred(s, 0), add_u32(s, 2), add_str(s, "/"), done(s, at);
	at = hdr(s, AG_WATCH, 6), cred(s, 0), add_u32(s, 1), add_str(s, "/tmp"), done(s, at);
	at = hdr(s, AG_CANCEL, 6), done(s, at);
	at = hdr(s, AG_STATS, 7), done(s, at);
	at = hdr(s, AG_PING, 8), done(s, at);
}

static const uint32_t interesting[] = {0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, AGENT_MAX_PAYLOAD,
				       AGENT_MAX_PAYLOAD + 1, AGENT_MAX_GROUPS, AGENT_MAX_GROUPS + 1, AGENT_MAX_ARGS,
				       AGENT_MAX_ARGS + 1, 0x7fffffff, 0x80000000u, 0xffffffffu};

static void mutate(struct in *s, const struct in *other)
{
	int rounds = 1 + (int)below(8);
	for (int k = 0; k < rounds; k++) {
		size_t pos = below(s->n + 1);
		switch (below(9)) {
		case 0: /* flip a bit */
			if (s->n)
				s->b[below(s->n)] ^= (uint8_t)(1u << below(8));
			break;
		case 1: /* a random byte */
			if (s->n)
				s->b[below(s->n)] = (uint8_t)rnd();
			break;
		case 2: /* an interesting u16/u32 anywhere */
			if (s->n >= 4) {
				size_t at = below(s->n - 3);
				uint32_t v = interesting[below(sizeof interesting / sizeof interesting[0])];
				if (rnd() & 1)
					put_u32(s->b + at, v);
				else
					put_u16(s->b + at, (uint16_t)v);
			}
			break;
		case 3: /* delete a run */
			if (pos < s->n) {
				size_t n = 1 + below(s->n - pos < 64 ? s->n - pos : 64);
				memmove(s->b + pos, s->b + pos + n, s->n - pos - n);
				s->n -= n;
			}
			break;
		case 4: { /* insert random bytes (a NUL often: strings) */
			size_t n = 1 + below(16);
			if (s->n + n > MAXIN)
				break;
			memmove(s->b + pos + n, s->b + pos, s->n - pos);
			for (size_t i = 0; i < n; i++)
				s->b[pos + i] = rnd() & 3 ? (uint8_t)rnd() : 0;
			s->n += n;
			break;
		}
		case 5: /* truncate */
			s->n = pos;
			break;
		case 6: { /* splice in a run of another input */
			if (!other->n)
				break;
			size_t from = below(other->n), n = 1 + below(other->n - from);
			if (s->n + n > MAXIN)
				break;
			memmove(s->b + pos + n, s->b + pos, s->n - pos);
			memcpy(s->b + pos, other->b + from, n);
			s->n += n;
			break;
		}
		case 7: /* duplicate a run (repeated strings / frames) */
			if (pos < s->n) {
				size_t n = 1 + below(s->n - pos < 256 ? s->n - pos : 256);
				if (s->n + n <= MAXIN) {
					memmove(s->b + pos + n, s->b + pos, s->n - pos);
					s->n += n;
				}
			}
			break;
		case 8: /* a header-sized field at a frame boundary: lengths that lie */
			if (s->n >= AGENT_HEADER) {
				size_t at = below(s->n - AGENT_HEADER + 1);
				put_u32(s->b + at, (uint32_t)below(s->n + 64));
			}
			break;
		}
	}
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	unsigned long iters = argc > 2 ? strtoul(argv[2], NULL, 0) : 200000;
	rng = seed * 0x9e3779b97f4a7c15ull + 1;
	static struct in base, cur, pool[64];
	seed_stream(&base);
	for (int i = 0; i < 64; i++)
		pool[i] = base;
	one(base.b, base.n);
	for (unsigned long i = 0; i < iters; i++) {
		struct in *src = &pool[below(64)];
		cur = below(8) ? *src : base;
		mutate(&cur, &pool[below(64)]);
		one(cur.b, cur.n);
		/* keep some mutants as parents: deep mutations reach inside the later frames */
		if (below(4) == 0)
			pool[below(64)] = cur;
	}
	printf("fuzz_frame: seed %llu, %lu inputs, no crash\n", (unsigned long long)seed, iters);
	return 0;
}
#endif
