/* Internals shared by the agent's modules (not part of the wire protocol: see protocol.h). */
#ifndef COPPICE_AGENT_H
#define COPPICE_AGENT_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "protocol.h"

/* Stop reading sources while this much output waits for the gateway (credit bounds it anyway). */
#define CHAN_BACKLOG_MAX (1u << 20)

/* One poll() round: modules add fds with a callback. */
typedef void (*poll_fn)(void *ctx, int fd, short revents);
void ps_add(int fd, short events, poll_fn fn, void *ctx);
/* A module with work to do without waiting (a regular file to stream) asks for a zero timeout. */
void ps_busy(void);

/* chan.c: the one gateway connection */
int chan_connected(void);
void chan_send(uint8_t type, uint32_t id, const void *a, size_t alen, const void *b, size_t blen);
void chan_error(uint32_t id, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void chan_ok(uint32_t id);
/* Space for a frame of up to max payload bytes written in place; chan_commit sends len of them. */
uint8_t *chan_reserve(size_t max);
void chan_commit(uint8_t type, uint32_t id, size_t len);
int chan_room(void);
void chan_setup(int listen_fd);
int chan_holding(void);
void chan_flush(void);
void chan_trim(void);
void chan_poll(void);
void dispatch(uint8_t type, uint32_t id, const uint8_t *p, size_t len); /* main.c */

/* proc.c */
void proc_start(uint32_t id, const uint8_t *p, size_t len);
int proc_frame(uint8_t type, uint32_t id, const uint8_t *p, size_t len); /* 1 if handled */
void proc_reaped(pid_t pid, int status);
void proc_poll(void);
void proc_disconnect(void);
void proc_signal_all(int sig);
int proc_count(void);

/* files.c */
int cred_enter(const struct cred *c);
void cred_leave(void);
int files_frame(uint8_t type, uint32_t id, const uint8_t *p, size_t len);
void files_poll(void);
void files_disconnect(void);

/* fsops.c (errno-style results) */
struct FTW;
struct stat;
int send_entry(uint32_t id, const char *path, int follow);
int list_dir(uint32_t id, const char *dir, unsigned depth, unsigned *budget);
int mkdir_p(const char *path, mode_t mode, int *created);
int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw);
int write_target(const char *path, char *out, size_t cap);

/* watch.c */
int watch_frame(uint8_t type, uint32_t id, const uint8_t *p, size_t len);
void watch_poll(void);
void watch_disconnect(void);

/* stats.c */
void stats_reply(uint32_t id);

#endif
