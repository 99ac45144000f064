#ifndef FLOE_NET_H
#define FLOE_NET_H
#include <stdint.h>

// epoll and eventfd, which Swift's Glibc module does not expose, behind plain functions.
// (struct epoll_event is packed on x86-64; these keep that detail in C.)

enum {
    FLOE_EV_IN = 0x001,
    FLOE_EV_OUT = 0x004,
    FLOE_EV_ERR = 0x008,
    FLOE_EV_HUP = 0x010,
};

/// epoll_create1(EPOLL_CLOEXEC); -1 with errno on failure.
int floe_epoll_create(void);
/// op: 0 add, 1 modify, 2 delete. Returns 0 or -1 with errno.
int floe_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token);
/// Waits up to `timeout_ms`; fills `events`/`tokens` (each of length max). Returns the count, or -1.
int floe_epoll_wait(int epfd, uint32_t *events, uint64_t *tokens, int max, int timeout_ms);
/// accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC).
int floe_accept_nonblocking(int fd, void *addr, unsigned int *len);
/// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC).
int floe_eventfd(void);
#endif
