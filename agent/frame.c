/* Frame header and payload decoding: pure functions over byte buffers (unit-tested and fuzzed). */
#include <string.h>

#include "protocol.h"

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* 0: need more bytes; 1: header decoded; -1: length over the limit or reserved bytes set (the
 * stream is not ours or is out of step, and cannot be resynchronised). */
int frame_decode_hdr(const uint8_t *buf, size_t avail, struct frame_hdr *h)
{
	if (avail < AGENT_HEADER)
		return 0;
	h->len = get_u32(buf);
	h->type = buf[4];
	h->id = get_u32(buf + 8);
	if (h->len > AGENT_MAX_PAYLOAD || buf[5] || buf[6] || buf[7])
		return -1;
	return 1;
}

/* The next whole frame at the start of buf: 1 (h, *payload set; AGENT_HEADER + h->len bytes used),
 * 0 (incomplete: read more), -1 (broken stream, see frame_decode_hdr; h is decoded for the reply). */
int frame_next(const uint8_t *buf, size_t avail, struct frame_hdr *h, const uint8_t **payload)
{
	int r = frame_decode_hdr(buf, avail, h);
	if (r <= 0)
		return r;
	if (avail - AGENT_HEADER < h->len)
		return 0;
	*payload = buf + AGENT_HEADER;
	return 1;
}

void frame_encode_hdr(uint8_t *buf, uint8_t type, uint32_t id, uint32_t len)
{
	put_u32(buf, len);
	buf[4] = type;
	buf[5] = 0;
	buf[6] = 0;
	buf[7] = 0;
	put_u32(buf + 8, id);
}

void rd_init(struct rd *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->off = 0;
	r->bad = 0;
}

uint16_t rd_u16(struct rd *r)
{
	if (r->bad || r->len - r->off < 2) {
		r->bad = 1;
		return 0;
	}
	uint16_t v = (uint16_t)(r->p[r->off] | r->p[r->off + 1] << 8);
	r->off += 2;
	return v;
}

uint32_t rd_u32(struct rd *r)
{
	if (r->bad || r->len - r->off < 4) {
		r->bad = 1;
		return 0;
	}
	uint32_t v = get_u32(r->p + r->off);
	r->off += 4;
	return v;
}

/* A NUL-terminated string inside the payload, or NULL (and bad) when it runs off the end. */
const char *rd_str(struct rd *r)
{
	if (r->bad || r->off >= r->len) {
		r->bad = 1;
		return NULL;
	}
	const uint8_t *s = r->p + r->off;
	const uint8_t *nul = memchr(s, 0, r->len - r->off);
	if (!nul) {
		r->bad = 1;
		return NULL;
	}
	r->off += (size_t)(nul - s) + 1;
	return (const char *)s;
}

int rd_cred(struct rd *r, struct cred *c)
{
	c->uid = rd_u32(r);
	c->gid = rd_u32(r);
	c->ngroups = rd_u16(r);
	rd_u16(r);
	if (r->bad || c->ngroups > AGENT_MAX_GROUPS || c->uid == (uint32_t)-1 || c->gid == (uint32_t)-1) {
		r->bad = 1;
		return -1;
	}
	for (unsigned i = 0; i < c->ngroups; i++)
		c->groups[i] = rd_u32(r);
	return r->bad ? -1 : 0;
}

/* 0 on success, -1 on a malformed payload (nothing is trusted: counts are checked against the bytes). */
int parse_start(const uint8_t *p, size_t len, struct start_req *s)
{
	struct rd r;
	rd_init(&r, p, len);
	if (rd_cred(&r, &s->cred) < 0)
		return -1;
	s->cols = rd_u16(&r);
	s->rows = rd_u16(&r);
	s->argc = rd_u16(&r);
	s->envc = rd_u16(&r);
	if (r.bad || s->argc == 0 || s->argc > AGENT_MAX_ARGS || s->envc > AGENT_MAX_ARGS)
		return -1;
	if ((s->cols == 0) != (s->rows == 0))
		return -1;
	s->cwd = rd_str(&r);
	for (unsigned i = 0; i < s->argc; i++)
		s->argv[i] = rd_str(&r);
	s->argv[s->argc] = NULL;
	for (unsigned i = 0; i < s->envc; i++)
		s->envp[i] = rd_str(&r);
	s->envp[s->envc] = NULL;
	if (r.bad || r.off != len || s->cwd[0] != '/' || s->argv[0][0] == 0)
		return -1;
	return 0;
}

/* File and watch requests: cred, [u32 arg], path\0 [to\0]; paths are absolute and non-empty.
 * 0 on success, -1 on a malformed payload. */
int parse_file_req(uint8_t type, const uint8_t *p, size_t len, struct file_req *f)
{
	struct rd r;
	rd_init(&r, p, len);
	f->arg = 0;
	f->to = NULL;
	if (rd_cred(&r, &f->cred) < 0)
		return -1;
	switch (type) {
	case AG_FWRITE:
	case AG_STAT:
	case AG_LIST:
	case AG_MKDIR:
	case AG_WATCH:
		f->arg = rd_u32(&r);
		break;
	case AG_FREAD:
	case AG_RENAME:
	case AG_REMOVE:
		break;
	default:
		return -1;
	}
	f->path = rd_str(&r);
	if (type == AG_RENAME)
		f->to = rd_str(&r);
	if (r.bad || r.off != len || f->path[0] != '/' || (f->to && f->to[0] != '/'))
		return -1;
	return 0;
}
