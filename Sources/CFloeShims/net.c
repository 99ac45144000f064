#define _GNU_SOURCE
#include "floe_net.h"
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

int floe_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int floe_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = token;
    int cop = op == 0 ? EPOLL_CTL_ADD : (op == 1 ? EPOLL_CTL_MOD : EPOLL_CTL_DEL);
    return epoll_ctl(epfd, cop, fd, &ev);
}

int floe_epoll_wait(int epfd, uint32_t *events, uint64_t *tokens, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        events[i] = evs[i].events;
        tokens[i] = evs[i].data.u64;
    }
    return n;
}

int floe_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }
#endif

#ifdef __linux__
int floe_accept_nonblocking(int fd, void *addr, unsigned int *len) {
    return accept4(fd, (struct sockaddr *)addr, (socklen_t *)len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
#endif
