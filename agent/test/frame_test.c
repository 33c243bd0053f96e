/* Unit tests of the pure decoders in frame.c (run by `make test`, under ASan/UBSan). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../protocol.h"

static int failed, checks;

#define CHECK(cond)                                                                  \
	do {                                                                         \
		checks++;                                                            \
		if (!(cond)) {                                                       \
			failed++;                                                    \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                    \
	} while (0)

/* A payload under construction. */
struct buf {
	uint8_t b[1 << 17];
	size_t n;
};

static void b_u16(struct buf *b, uint16_t v) { put_u16(b->b + b->n, v), b->n += 2; }
static void b_u32(struct buf *b, uint32_t v) { put_u32(b->b + b->n, v), b->n += 4; }
static void b_str(struct buf *b, const char *s)
{
	size_t l = strlen(s) + 1;
	memcpy(b->b + b->n, s, l);
	b->n += l;
}
static void b_cred(struct buf *b, uint32_t uid, uint32_t gid, uint16_t ng)
{
	b_u32(b, uid), b_u32(b, gid), b_u16(b, ng), b_u16(b, 0);
	for (unsigned i = 0; i < ng; i++)
		b_u32(b, 100 + i);
}

static void test_header(void)
{
	uint8_t h[AGENT_HEADER];
	struct frame_hdr d;
	frame_encode_hdr(h, AG_START, 0xdeadbeef, 1234);
	CHECK(h[0] == 0xd2 && h[1] == 0x04 && h[2] == 0 && h[3] == 0); /* little-endian */
	CHECK(frame_decode_hdr(h, sizeof h, &d) == 1);
	CHECK(d.len == 1234 && d.type == AG_START && d.id == 0xdeadbeef);
	for (size_t n = 0; n < AGENT_HEADER; n++)
		CHECK(frame_decode_hdr(h, n, &d) == 0);
	frame_encode_hdr(h, AG_STDIN, 1, AGENT_MAX_PAYLOAD);
	CHECK(frame_decode_hdr(h, sizeof h, &d) == 1);
	frame_encode_hdr(h, AG_STDIN, 7, AGENT_MAX_PAYLOAD + 1);
	CHECK(frame_decode_hdr(h, sizeof h, &d) == -1 && d.id == 7 && d.len == AGENT_MAX_PAYLOAD + 1);
	frame_encode_hdr(h, AG_STDIN, 1, 0xffffffffu);
	CHECK(frame_decode_hdr(h, sizeof h, &d) == -1);
	for (int i = 5; i < 8; i++) {
		frame_encode_hdr(h, AG_PING, 1, 0);
		h[i] = 1;
		CHECK(frame_decode_hdr(h, sizeof h, &d) == -1);
	}
}

static void test_next(void)
{
	uint8_t s[64];
	struct frame_hdr h;
	const uint8_t *p = NULL;
	frame_encode_hdr(s, AG_STDIN, 5, 3);
	memcpy(s + AGENT_HEADER, "abc", 3);
	frame_encode_hdr(s + AGENT_HEADER + 3, AG_PING, 6, 0);
	size_t total = 2 * AGENT_HEADER + 3;
	for (size_t n = 0; n < AGENT_HEADER + 3; n++)
		CHECK(frame_next(s, n, &h, &p) == 0);
	CHECK(frame_next(s, total, &h, &p) == 1 && h.id == 5 && h.len == 3 && p == s + AGENT_HEADER);
	CHECK(!memcmp(p, "abc", 3));
	CHECK(frame_next(s + AGENT_HEADER + 3, AGENT_HEADER, &h, &p) == 1 && h.type == AG_PING && h.len == 0);
	frame_encode_hdr(s, AG_STDIN, 9, AGENT_MAX_PAYLOAD + 1);
	CHECK(frame_next(s, AGENT_HEADER, &h, &p) == -1);
}

static void test_rd(void)
{
	const uint8_t b[] = {1, 2, 3, 4, 5, 6, 'h', 'i', 0, 'x'};
	struct rd r;
	rd_init(&r, b, sizeof b);
	CHECK(rd_u16(&r) == 0x0201);
	CHECK(rd_u32(&r) == 0x06050403);
	const char *s = rd_str(&r);
	CHECK(s && !strcmp(s, "hi") && !r.bad);
	CHECK(rd_str(&r) == NULL && r.bad); /* "x" has no NUL */
	CHECK(rd_u16(&r) == 0 && r.bad);    /* stays bad */
	rd_init(&r, b, 3);
	CHECK(rd_u32(&r) == 0 && r.bad);
	rd_init(&r, b, 1);
	CHECK(rd_u16(&r) == 0 && r.bad);
	rd_init(&r, b, 0);
	CHECK(rd_str(&r) == NULL && r.bad);
	rd_init(&r, (const uint8_t *)"\0", 1);
	s = rd_str(&r);
	CHECK(s && s[0] == 0 && r.off == 1 && !r.bad);
	uint8_t w[8];
	put_u64(w, 0x0102030405060708ull);
	CHECK(w[0] == 8 && w[7] == 1);
}

static void test_cred(void)
{
	struct buf b = {.n = 0};
	struct cred c;
	struct rd r;
	b_cred(&b, 1000, 1001, 3);
	rd_init(&r, b.b, b.n);
	CHECK(rd_cred(&r, &c) == 0 && c.uid == 1000 && c.gid == 1001 && c.ngroups == 3 && c.groups[2] == 102);
	CHECK(r.off == b.n);
	rd_init(&r, b.b, b.n - 1); /* last group cut short */
	CHECK(rd_cred(&r, &c) < 0);
	b.n = 0;
	b_cred(&b, 0, 0, AGENT_MAX_GROUPS);
	rd_init(&r, b.b, b.n);
	CHECK(rd_cred(&r, &c) == 0 && c.ngroups == AGENT_MAX_GROUPS);
	b.n = 0;
	b_cred(&b, 0, 0, AGENT_MAX_GROUPS + 1);
	rd_init(&r, b.b, b.n);
	CHECK(rd_cred(&r, &c) < 0);
	b.n = 0;
	b_cred(&b, 0xffffffffu, 0, 0); /* (uid_t)-1 means "unchanged" to setuid: refused */
	rd_init(&r, b.b, b.n);
	CHECK(rd_cred(&r, &c) < 0);
	b.n = 0;
	b_cred(&b, 0, 0xffffffffu, 0);
	rd_init(&r, b.b, b.n);
	CHECK(rd_cred(&r, &c) < 0);
}

static struct start_req req;

/* A START payload: cols/rows, cwd, argv (argc strings), env (envc strings). */
static void start(struct buf *b, uint16_t cols, uint16_t rows, uint16_t argc, uint16_t envc, const char *cwd,
		  const char *const *strs)
{
	b->n = 0;
	b_cred(b, 1000, 1000, 1);
	b_u16(b, cols), b_u16(b, rows), b_u16(b, argc), b_u16(b, envc);
	b_str(b, cwd);
	for (; *strs; strs++)
		b_str(b, *strs);
}

static void test_start(void)
{
	static struct buf b;
	const char *ok[] = {"sh", "-c", "echo hi", "A=1", "B=2", NULL};
	start(&b, 0, 0, 3, 2, "/tmp", ok);
	CHECK(parse_start(b.b, b.n, &req) == 0);
	CHECK(req.argc == 3 && !strcmp(req.argv[2], "echo hi") && req.argv[3] == NULL);
	CHECK(req.envc == 2 && !strcmp(req.envp[1], "B=2") && req.envp[2] == NULL);
	CHECK(!strcmp(req.cwd, "/tmp") && req.cred.uid == 1000 && req.cols == 0);
	start(&b, 80, 24, 3, 2, "/", ok);
	CHECK(parse_start(b.b, b.n, &req) == 0 && req.cols == 80 && req.rows == 24);
	for (size_t n = 0; n < b.n; n++)
		CHECK(parse_start(b.b, n, &req) == -1); /* every truncation */
	start(&b, 80, 0, 3, 2, "/", ok); /* cols without rows */
	CHECK(parse_start(b.b, b.n, &req) == -1);
	start(&b, 0, 24, 3, 2, "/", ok);
	CHECK(parse_start(b.b, b.n, &req) == -1);
	start(&b, 0, 0, 0, 5, "/", ok); /* no argv */
	CHECK(parse_start(b.b, b.n, &req) == -1);
	start(&b, 0, 0, 3, 1, "/", ok); /* a string left over */
	CHECK(parse_start(b.b, b.n, &req) == -1);
	start(&b, 0, 0, 3, 3, "/", ok); /* one string short */
	CHECK(parse_start(b.b, b.n, &req) == -1);
	start(&b, 0, 0, 3, 2, "tmp", ok); /* relative cwd */
	CHECK(parse_start(b.b, b.n, &req) == -1);
	const char *empty[] = {"", NULL};
	start(&b, 0, 0, 1, 0, "/", empty);
	CHECK(parse_start(b.b, b.n, &req) == -1);

	/* the argument and environment limits */
	static const char *many[2 * AGENT_MAX_ARGS + 2];
	for (int i = 0; i < 2 * AGENT_MAX_ARGS; i++)
		many[i] = "x";
	many[2 * AGENT_MAX_ARGS] = NULL;
	start(&b, 0, 0, AGENT_MAX_ARGS, AGENT_MAX_ARGS, "/", many);
	CHECK(parse_start(b.b, b.n, &req) == 0 && req.argv[AGENT_MAX_ARGS] == NULL &&
	      req.envp[AGENT_MAX_ARGS] == NULL);
	many[2 * AGENT_MAX_ARGS] = "x";
	many[2 * AGENT_MAX_ARGS + 1] = NULL;
	start(&b, 0, 0, AGENT_MAX_ARGS + 1, AGENT_MAX_ARGS, "/", many);
	CHECK(parse_start(b.b, b.n, &req) == -1);
	start(&b, 0, 0, AGENT_MAX_ARGS, AGENT_MAX_ARGS + 1, "/", many);
	CHECK(parse_start(b.b, b.n, &req) == -1);
}

static void test_file_req(void)
{
	struct buf b;
	struct file_req f;
	b.n = 0;
	b_cred(&b, 5, 6, 0), b_u32(&b, 0644), b_str(&b, "/a/b");
	CHECK(parse_file_req(AG_FWRITE, b.b, b.n, &f) == 0 && f.arg == 0644 && !strcmp(f.path, "/a/b") && !f.to);
	CHECK(f.cred.uid == 5 && f.cred.gid == 6);
	CHECK(parse_file_req(AG_FREAD, b.b, b.n, &f) == -1); /* FREAD has no u32: the bytes do not fit */
	for (size_t n = 0; n < b.n; n++)
		CHECK(parse_file_req(AG_FWRITE, b.b, n, &f) == -1);
	b.n = 0;
	b_cred(&b, 5, 6, 0), b_str(&b, "/x");
	CHECK(parse_file_req(AG_FREAD, b.b, b.n, &f) == 0 && f.arg == 0);
	CHECK(parse_file_req(AG_REMOVE, b.b, b.n, &f) == 0);
	CHECK(parse_file_req(AG_RENAME, b.b, b.n, &f) == -1);
	CHECK(parse_file_req(AG_START, b.b, b.n, &f) == -1); /* not a file request */
	CHECK(parse_file_req(AG_CANCEL, b.b, b.n, &f) == -1);
	b_str(&b, "/y");
	CHECK(parse_file_req(AG_RENAME, b.b, b.n, &f) == 0 && !strcmp(f.to, "/y"));
	CHECK(parse_file_req(AG_FREAD, b.b, b.n, &f) == -1); /* trailing bytes */
	b.n = 0;
	b_cred(&b, 5, 6, 0), b_str(&b, "/x"), b_str(&b, "y");
	CHECK(parse_file_req(AG_RENAME, b.b, b.n, &f) == -1); /* relative target */
	b.n = 0;
	b_cred(&b, 5, 6, 0), b_str(&b, "x");
	CHECK(parse_file_req(AG_FREAD, b.b, b.n, &f) == -1); /* relative */
	b.n = 0;
	b_cred(&b, 5, 6, 0), b_str(&b, "");
	CHECK(parse_file_req(AG_REMOVE, b.b, b.n, &f) == -1); /* empty */
	b.n = 0;
	b_cred(&b, 5, 6, 0), b_u32(&b, 1), b_str(&b, "/w");
	CHECK(parse_file_req(AG_WATCH, b.b, b.n, &f) == 0 && f.arg == 1);
	CHECK(parse_file_req(AG_LIST, b.b, b.n, &f) == 0 && f.arg == 1);
	CHECK(parse_file_req(AG_STAT, b.b, b.n, &f) == 0);
	CHECK(parse_file_req(AG_MKDIR, b.b, b.n, &f) == 0);
}

int main(void)
{
	test_header();
	test_next();
	test_rd();
	test_cred();
	test_start();
	test_file_req();
	printf("frame_test: %d checks, %d failed\n", checks, failed);
	return failed ? 1 : 0;
}
